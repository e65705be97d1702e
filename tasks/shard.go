package tasks

import (
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ShardKey returns what picks the shard queue of t in a sharded class (see
// keyspec.Class.QueueFor): the first key of a DeleteKeys, the family of a
// DeleteFamily, and the family with its parameters for a BumpVersion, the
// event name with its attributes for an Event. So one entity's tasks of one
// kind land in one shard, in order, and producers and workers (which
// enqueue second deletes and an event's pattern deletes) agree on it.
// The parameters are joined in name order, each value length-prefixed, since
// a value may hold any byte.
func ShardKey(t Task) string {
	switch t := t.(type) {
	case DeleteKeys:
		if len(t.Keys) > 0 {
			return t.Keys[0]
		}
	case DeleteFamily:
		return t.Family
	case BumpVersion:
		return withParams(t.Family, t.Params)
	case Event:
		return withParams(t.Name, t.Attrs)
	}
	return ""
}

func withParams(name string, params map[string]string) string {
	var b strings.Builder
	b.WriteString(name)
	for _, k := range slices.Sorted(maps.Keys(params)) {
		b.WriteString("\x00")
		b.WriteString(k)
		b.WriteString("=")
		b.WriteString(strconv.Itoa(len(params[k])))
		b.WriteString(":")
		b.WriteString(params[k])
	}
	return b.String()
}
