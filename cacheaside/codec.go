package cacheaside

import "encoding/json"

// Codec turns values of type T into the bytes Typed stores, and back.
// Implementations must be safe for concurrent use. Unmarshal gets bytes
// read from Redis, which any client may have written, so it must return an
// error on bad input rather than panic.
type Codec[T any] interface {
	Marshal(v T) ([]byte, error)
	Unmarshal(data []byte) (T, error)
}

// JSON is a Codec that stores values as encoding/json does.
type JSON[T any] struct{}

// Marshal implements Codec.
func (JSON[T]) Marshal(v T) ([]byte, error) { return json.Marshal(v) }

// Unmarshal implements Codec.
func (JSON[T]) Unmarshal(data []byte) (T, error) {
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}
