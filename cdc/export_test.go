package cdc

import "github.com/invalidator/invalidator/keyspec"

// SetAfterFlushOf sets a hook run after each enqueue of pending events with
// the events enqueued and the peak of events held so far.
func SetAfterFlushOf(r *Reader, f func(enqueued, peak int)) { r.hook.Store(&f) }

// Decoder wraps the package's decoder for tests.
type Decoder struct{ d *decoder }

// NewDecoder returns a decoder of p's tables.
func NewDecoder(p *keyspec.Policy) *Decoder { return &Decoder{newDecoder(p)} }

// Decode decodes one pgoutput message and returns its publications of row
// versions as event and attributes (DecodeAll gives a TRUNCATE's too).
func (d *Decoder) Decode(data []byte) ([]string, []map[string]string, error) {
	events, attrs, _, err := d.DecodeAll(data)
	return events, attrs, err
}

// DecodeAll is Decode that also returns the events of the truncated
// tables, which invalidate every key the event can.
func (d *Decoder) DecodeAll(data []byte) (events []string, attrs []map[string]string, truncated []string, err error) {
	c, err := d.d.decode(data)
	for _, p := range c.pubs {
		if p.all {
			truncated = append(truncated, p.event)
			continue
		}
		events = append(events, p.event)
		attrs = append(attrs, p.attrs)
	}
	return events, attrs, truncated, err
}
