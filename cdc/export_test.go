package cdc

import "github.com/invalidator/invalidator/keyspec"

// SetAfterFlushOf sets a hook run after each enqueue of pending events with
// the events enqueued and the peak of events held so far.
func SetAfterFlushOf(r *Reader, f func(enqueued, peak int)) { r.hook.Store(&f) }

// Decoder wraps the package's decoder for tests.
type Decoder struct{ d *decoder }

// NewDecoder returns a decoder of p's tables.
func NewDecoder(p *keyspec.Policy) *Decoder { return &Decoder{newDecoder(p)} }

// Decode decodes one pgoutput message and returns its publications as
// event and attributes.
func (d *Decoder) Decode(data []byte) ([]string, []map[string]string, error) {
	c, err := d.d.decode(data)
	var events []string
	var attrs []map[string]string
	for _, p := range c.pubs {
		events = append(events, p.event)
		attrs = append(attrs, p.attrs)
	}
	return events, attrs, err
}
