package cdc_test

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cdc"
)

// relationMsg encodes a pgoutput Relation message of public.prices.
func relationMsg(id uint32, identity byte, cols ...string) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(b, "public\x00prices\x00"...)
	b = append(b, identity)
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, 1)
		b = append(b, c...)
		b = append(b, 0)
		b = binary.BigEndian.AppendUint32(b, 25)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff)
	}
	return b
}

// tuple encodes a TupleData of text values ("" is NULL).
func tuple(vals ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		if v == "" {
			b = append(b, 'n')
			continue
		}
		b = append(b, 't')
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return b
}

// FuzzDecode feeds the decoder arbitrary pgoutput messages after a valid
// Relation message: the replication stream is outside input, so a
// malformed message must be an error, never a panic, and every publication
// must carry exactly the event's attributes, none empty (a truncate's,
// every key of the event, carries none).
func FuzzDecode(f *testing.F) {
	rel := relationMsg(7, 'f', "id", "product_id", "currency")
	insert := append([]byte{'I', 0, 0, 0, 7, 'N'}, tuple("1", "7", "EUR")...)
	update := append(append(append([]byte{'U', 0, 0, 0, 7, 'O'}, tuple("1", "7", "EUR")...), 'N'), tuple("1", "8", "EUR")...)
	del := append([]byte{'D', 0, 0, 0, 7, 'O'}, tuple("1", "7", "")...)
	for _, seed := range [][]byte{insert, update, del, {'T', 0, 0, 0, 1, 0, 0, 0, 0, 7}, {'B'}, {'C', 0}, {}, {'I'}, {'R', 0}} {
		f.Add(seed)
	}
	p := policyF(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := cdc.NewDecoder(p)
		_, _, err := d.Decode(rel)
		require.NoError(t, err)
		events, attrs, truncated, err := d.DecodeAll(data)
		if err != nil {
			require.Empty(t, events)
			require.Empty(t, truncated)
			return
		}
		for _, e := range truncated {
			require.Equal(t, "price.changed", e)
		}
		for i, e := range events {
			require.Equal(t, "price.changed", e)
			require.Len(t, attrs[i], 2)
			for _, v := range attrs[i] {
				require.NotEmpty(t, v)
			}
		}
	})
}

func TestDecodeUpdateThatMoves(t *testing.T) {
	t.Parallel()
	d := cdc.NewDecoder(policy(t))
	_, _, err := d.Decode(relationMsg(7, 'f', "id", "product_id", "currency"))
	require.NoError(t, err)
	update := append(append(append([]byte{'U', 0, 0, 0, 7, 'O'}, tuple("1", "7", "EUR")...), 'N'), tuple("1", "8", "EUR")...)
	events, attrs, err := d.Decode(update)
	require.NoError(t, err)
	require.Equal(t, []string{"price.changed", "price.changed"}, events)
	require.Equal(t, []map[string]string{{"sku": "8", "currency": "EUR"}, {"sku": "7", "currency": "EUR"}}, attrs)

	_, _, err = d.Decode(relationMsg(7, 'd', "id", "product_id", "currency")[:0:0])
	require.Error(t, err, "an empty message")
	_, _, err = d.Decode([]byte{'I', 0, 0, 0, 9, 'N', 0, 1, 'n'})
	require.ErrorContains(t, err, "before its Relation message")
}

// A truncate message (here with CASCADE) of a mapped table invalidates
// every key of the table's event: no row publishes.
func TestDecodeTruncate(t *testing.T) {
	t.Parallel()
	d := cdc.NewDecoder(policy(t))
	_, _, err := d.Decode(relationMsg(7, 'f', "id", "product_id", "currency"))
	require.NoError(t, err)
	events, _, truncated, err := d.DecodeAll([]byte{'T', 0, 0, 0, 1, 1, 0, 0, 0, 7}) // CASCADE
	require.NoError(t, err)
	require.Empty(t, events)
	require.Equal(t, []string{"price.changed"}, truncated)
}
