// Package slot computes Redis Cluster hash slots, so that multi-key commands
// never cross slots.
//
// A Redis Cluster refuses a multi-key command (UNLINK a b c) whose keys live in
// different slots with a CROSSSLOT error. The worker therefore groups the keys
// of a batch by slot before it pipelines one UNLINK per group; on a standalone
// server the grouping costs a few CRCs and changes nothing.
//
// The slot of a key is CRC16/XMODEM of the key modulo 16384, or of its hash
// tag: the bytes between the first '{' and the first '}' after it, when there
// is at least one byte between them. This is the algorithm of the Redis
// Cluster specification, byte for byte, so keys are treated as raw bytes.
//
//	slot.Of("{user:1}:profile") == slot.Of("{user:1}:posts") // true: one UNLINK may carry both
package slot
