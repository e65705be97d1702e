// Package versionlua holds the Lua that reads the clock of version
// families, shared by the scripts that write a version: the worker's bump
// (worker/bump_version.go) and cacheaside's versioned read, which creates a
// missing version key. Both must count in the same unit from the same clock,
// or a version one of them writes could land below one the other handed
// out.
package versionlua

// Now defines the Lua function version_now(): Redis TIME in microseconds,
// the unit of every version. Put it in a script after the script's
// KEYS/ARGV header and before its first use.
const Now = `
-- version_now() -> Redis TIME in microseconds, the unit of versions
local function version_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
`
