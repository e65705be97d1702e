package redisconn_test

import (
	"fmt"

	"github.com/invalidator/invalidator/internal/redisconn"
)

func ExampleRedact() {
	fmt.Println(redisconn.Redact("redis://app:s3cret@cache.internal:6379/2"))
	fmt.Println(redisconn.Redact("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7000"))
	fmt.Println(redisconn.Redact("s3cret"))
	// Output:
	// redis://app:xxxxx@cache.internal:6379/2
	// redis+cluster://:xxxxx@10.0.0.1:7000,10.0.0.2:7000
	// <invalid redis URL>
}

func ExampleOpen() {
	for _, u := range []string{
		"redis://localhost:6379/2",
		"redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
		"redis+sentinel://10.0.0.5:26379,10.0.0.6:26379/mymaster?db=1",
	} {
		c, err := redisconn.Open(u) // no connection yet: see Ping
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%T\n", c)
		_ = c.Close()
	}
	_, err := redisconn.Open("redis://:s3cret@localhost:port/0")
	fmt.Println(err)
	// Output:
	// *redis.Client
	// *redis.ClusterClient
	// *redis.Client
	// invalid Redis URL redis://:xxxxx@localhost:port/0: port must be a number from 1 to 65535; expected redis://[user:password@]host:port[/db][?options] (rediss:// for TLS)
}
