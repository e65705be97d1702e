package redistest_test

import (
	"bytes"
	"os"
	"strconv"
)

// serverRunning reports whether pid is a live (not zombie) redis-server
// listening on port. Matching the port in the process title (redis-server
// sets it to "redis-server 127.0.0.1:PORT") keeps a recycled pid from
// passing for the server.
func serverRunning(pid, port int) bool {
	dir := "/proc/" + strconv.Itoa(pid)
	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil || !bytes.Contains(cmdline, []byte(":"+strconv.Itoa(port))) {
		return false
	}
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) STATE ...": the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return true
	}
	return stat[i+2] != 'Z' && stat[i+2] != 'X'
}
