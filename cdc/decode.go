package cdc

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/jackc/pglogrepl"

	"github.com/invalidator/invalidator/keyspec"
)

// publication is one event to publish: the event of a table's row change
// with the attribute values of one row version, or, for a TRUNCATE, every
// key the event can invalidate.
type publication struct {
	event string
	attrs map[string]string
	// all is set for a truncated table: it has no rows to name, so every
	// key of every family the event invalidates goes (attrs is nil).
	all   bool
	table string // the truncated table, of an all publication
}

// id identifies a publication for deduplication: two row versions with the
// same values publish the same event once.
func (p publication) id() string {
	var b strings.Builder
	b.WriteString(p.event)
	if p.all {
		// No attribute name is empty: this cannot collide.
		b.WriteString("\x00\x00all")
	}
	for _, a := range slices.Sorted(maps.Keys(p.attrs)) {
		b.WriteByte(0)
		b.WriteString(a)
		b.WriteByte(0)
		b.WriteString(p.attrs[a])
	}
	return b.String()
}

// relation is what the decoder knows of a table from its Relation message.
type relation struct {
	qualified string
	table     *keyspec.Table // nil: not in the policy, its changes are ignored
	// index maps each mapped column to its position in the tuples.
	index map[string]int
}

// skip is a row version that publishes nothing, and why; each is counted
// and logged.
type skip struct {
	table  string
	reason string
}

// Reasons a row version publishes nothing.
const (
	skipNull      = "null or empty value" // a mapped column is NULL or empty: no key has an empty parameter
	skipUnchanged = "unchanged toast"     // a mapped column's value was not sent and is not in the old row
	skipMissing   = "missing old row"     // a delete's old row lacks a mapped column (REPLICA IDENTITY)
	skipTruncate  = "truncate"            // a truncated table's family cannot be deleted whole (its pattern would be unsafe)
	skipRefused   = "refused by policy"   // the policy refuses the values (keyspec)
)

// errReplicaIdentity means a table's REPLICA IDENTITY does not cover its
// mapped columns, so deletes and moving updates cannot name the old row.
var errReplicaIdentity = errors.New("replica identity does not cover the mapped columns")

// decoder turns pgoutput messages into publications. It holds the relations
// of the stream; it is not safe for concurrent use.
type decoder struct {
	policy    *keyspec.Policy
	relations map[uint32]*relation
}

func newDecoder(p *keyspec.Policy) *decoder {
	return &decoder{policy: p, relations: map[uint32]*relation{}}
}

// change is what one pgoutput message means to the reader.
type change struct {
	begin  *pglogrepl.BeginMessage
	commit *pglogrepl.CommitMessage
	// row is set for a row change of a mapped table (insert, update,
	// delete, truncate), even when it publishes nothing.
	row bool
	// tables are the mapped tables of a row change: one, or each mapped
	// table of a truncate (with CASCADE, or naming several).
	tables []string
	pubs   []publication
	skips  []skip
}

// decode parses one pgoutput message (the WALData of an XLogData) and
// returns what it means. Outside input: a malformed message is an error,
// never a panic.
func (d *decoder) decode(data []byte) (c change, err error) {
	if len(data) == 0 {
		return c, errors.New("empty pgoutput message")
	}
	defer func() {
		if r := recover(); r != nil {
			c, err = change{}, fmt.Errorf("malformed pgoutput message of type %q: %v", data[0], r)
		}
	}()
	if err := checkLengths(data); err != nil {
		return c, err
	}
	msg, err := pglogrepl.Parse(data)
	if err != nil {
		return c, fmt.Errorf("parse pgoutput message of type %q: %w", data[0], err)
	}
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		c.begin = m
	case *pglogrepl.CommitMessage:
		c.commit = m
	case *pglogrepl.RelationMessage:
		return c, d.relation(m)
	case *pglogrepl.InsertMessage:
		rel := d.mapped(m.RelationID)
		if rel == nil {
			return c, d.known(m.RelationID)
		}
		c.row, c.tables = true, []string{rel.qualified}
		c.add(d.publish(rel, m.Tuple, nil))
	case *pglogrepl.UpdateMessage:
		rel := d.mapped(m.RelationID)
		if rel == nil {
			return c, d.known(m.RelationID)
		}
		c.row, c.tables = true, []string{rel.qualified}
		newPub, newSkip := d.publish(rel, m.NewTuple, m.OldTuple)
		c.add(newPub, newSkip)
		if m.OldTuple != nil {
			// The old row is sent when the identity changed (K) or the
			// identity is FULL (O): a mapped column may have moved.
			oldPub, oldSkip := d.publish(rel, m.OldTuple, nil)
			if oldSkip != nil && oldSkip.reason == skipNull && m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey {
				// A key tuple leaves columns outside the identity NULL; the
				// relation check guarantees the mapped ones are inside.
				oldSkip.reason = skipMissing
			}
			if oldSkip != nil || newPub == nil || oldPub.id() != newPub.id() {
				c.add(oldPub, oldSkip)
			}
		}
	case *pglogrepl.DeleteMessage:
		rel := d.mapped(m.RelationID)
		if rel == nil {
			return c, d.known(m.RelationID)
		}
		c.row, c.tables = true, []string{rel.qualified}
		if m.OldTuple == nil {
			c.skips = append(c.skips, skip{rel.qualified, skipMissing})
			break
		}
		c.add(d.publish(rel, m.OldTuple, nil))
	case *pglogrepl.TruncateMessage:
		for _, id := range m.RelationIDs {
			if rel := d.mapped(id); rel != nil {
				c.row = true
				c.tables = append(c.tables, rel.qualified)
				c.pubs = append(c.pubs, publication{event: rel.table.Event, all: true, table: rel.qualified})
			}
		}
	}
	// Type, origin and logical decoding messages change nothing here.
	return c, nil
}

func (c *change) add(p *publication, s *skip) {
	if p != nil {
		c.pubs = append(c.pubs, *p)
	}
	if s != nil {
		c.skips = append(c.skips, *s)
	}
}

// mapped returns the relation of id if the policy maps it.
func (d *decoder) mapped(id uint32) *relation {
	if rel := d.relations[id]; rel != nil && rel.table != nil {
		return rel
	}
	return nil
}

// known refuses a row change of a relation no Relation message announced:
// pgoutput always sends one first, so the stream is corrupt.
func (d *decoder) known(id uint32) error {
	if _, ok := d.relations[id]; !ok {
		return fmt.Errorf("pgoutput sent a row change of relation %d before its Relation message", id)
	}
	return nil
}

// relation records a table's columns; for a mapped table it checks that the
// replica identity covers every mapped column.
func (d *decoder) relation(m *pglogrepl.RelationMessage) error {
	q := m.Namespace + "." + m.RelationName
	rel := &relation{qualified: q, table: d.policy.Tables[q]}
	d.relations[m.RelationID] = rel
	if rel.table == nil {
		return nil
	}
	rel.index = map[string]int{}
	var outside []string
	for _, col := range rel.table.Columns() {
		i := slices.IndexFunc(m.Columns, func(c *pglogrepl.RelationMessageColumn) bool { return c.Name == col })
		if i < 0 {
			return fmt.Errorf("table %s has no column %q, which the policy's tables.%s maps (published columns: %s); fix the policy or the table",
				q, col, q, columnNames(m.Columns))
		}
		rel.index[col] = i
		// Flag 1 marks a column of the replica identity key.
		if m.ReplicaIdentity != 'f' && m.Columns[i].Flags&1 == 0 {
			outside = append(outside, col)
		}
	}
	if len(outside) > 0 {
		return fmt.Errorf("%w: table %s: columns %s are not in its REPLICA IDENTITY (%s), so a delete or an update that moves them cannot name the old row's keys; run ALTER TABLE %s REPLICA IDENTITY FULL (or USING INDEX of a unique index on them)",
			errReplicaIdentity, q, strings.Join(outside, ", "), identityName(m.ReplicaIdentity), q)
	}
	return nil
}

func columnNames(cols []*pglogrepl.RelationMessageColumn) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.Name
	}
	return strings.Join(names, ", ")
}

func identityName(b uint8) string {
	switch b {
	case 'd':
		return "DEFAULT: the primary key"
	case 'n':
		return "NOTHING"
	case 'i':
		return "USING INDEX"
	case 'f':
		return "FULL"
	}
	return fmt.Sprintf("unknown %q", b)
}

// publish returns the publication of one row version, or why there is
// none. fallback, when not nil, is the old row of an update: it gives the
// values of unchanged TOASTed columns, which pgoutput leaves out.
func (d *decoder) publish(rel *relation, tuple, fallback *pglogrepl.TupleData) (*publication, *skip) {
	t := rel.table
	if tuple == nil {
		return nil, &skip{rel.qualified, skipMissing}
	}
	attrs := make(map[string]string, len(t.Attributes))
	for attr, col := range t.Attributes {
		i := rel.index[col]
		if i >= len(tuple.Columns) {
			return nil, &skip{rel.qualified, skipMissing}
		}
		v := tuple.Columns[i]
		if v.DataType == pglogrepl.TupleDataTypeToast && fallback != nil && i < len(fallback.Columns) {
			v = fallback.Columns[i]
		}
		switch v.DataType {
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			if len(v.Data) == 0 {
				return nil, &skip{rel.qualified, skipNull}
			}
			attrs[attr] = string(v.Data)
		case pglogrepl.TupleDataTypeToast:
			return nil, &skip{rel.qualified, skipUnchanged}
		default: // 'n'
			return nil, &skip{rel.qualified, skipNull}
		}
	}
	return &publication{event: t.Event, attrs: attrs}, nil
}

// checkLengths checks that every column length of a row change message
// fits the message. pglogrepl allocates a column's stated length before it
// looks at the bytes, so a corrupt length of 4 GB would take 4 GB.
func checkLengths(data []byte) error {
	switch data[0] {
	case 'I', 'U', 'D':
	case 'T':
		// Count, options, then a relation id per count.
		if len(data) < 6 || uint64(binary.BigEndian.Uint32(data[1:]))*4 > uint64(len(data)-6) {
			return errors.New("truncate message: relation count beyond the message")
		}
		return nil
	default:
		return nil
	}
	b := data[1:]
	if len(b) < 4 {
		return fmt.Errorf("truncated %q message", data[0])
	}
	b = b[4:]
	for len(b) > 0 {
		switch b[0] {
		case 'N', 'K', 'O':
		default:
			return fmt.Errorf("unknown tuple tag %q in a %q message", b[0], data[0])
		}
		b = b[1:]
		if len(b) < 2 {
			return fmt.Errorf("truncated tuple in a %q message", data[0])
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		for range n {
			if len(b) < 1 {
				return fmt.Errorf("truncated tuple in a %q message", data[0])
			}
			kind := b[0]
			b = b[1:]
			if kind != 't' && kind != 'b' {
				continue
			}
			if len(b) < 4 {
				return fmt.Errorf("truncated column in a %q message", data[0])
			}
			l := binary.BigEndian.Uint32(b)
			b = b[4:]
			if uint64(l) > uint64(len(b)) {
				return fmt.Errorf("column of %d bytes in the %d left of a %q message", l, len(b), data[0])
			}
			b = b[l:]
		}
	}
	return nil
}
