package cacheaside

import (
	"context"
	"fmt"

	"github.com/invalidator/invalidator/keyspec"
)

// TypedLoader loads a value of type T; see Loader.
type TypedLoader[T any] func(ctx context.Context) (T, error)

// Typed is a Cache that stores values of type T through a Codec, so callers
// see T, never bytes.
//
//	users := cacheaside.NewTyped[User](cache, cacheaside.JSON[User]{})
//	u, err := users.Get(ctx, "user:{42}:profile", func(ctx context.Context) (User, error) {
//		return db.LoadUser(ctx, 42)
//	})
type Typed[T any] struct {
	c     *Cache
	codec Codec[T]
}

// NewTyped returns a typed view of c.
func NewTyped[T any](c *Cache, codec Codec[T]) *Typed[T] {
	return &Typed[T]{c: c, codec: codec}
}

// Get is Cache.Get for values of type T.
func (t *Typed[T]) Get(ctx context.Context, key string, load TypedLoader[T]) (T, error) {
	return t.decode(key, func() ([]byte, error) { return t.c.Get(ctx, key, t.encodeLoad(load)) })
}

// GetFamily is Cache.GetFamily for values of type T.
func (t *Typed[T]) GetFamily(ctx context.Context, fam *keyspec.Family, params map[string]string, load TypedLoader[T]) (T, error) {
	return t.decode(fam.Name+fmt.Sprint(params), func() ([]byte, error) { return t.c.GetFamily(ctx, fam, params, t.encodeLoad(load)) })
}

// GetVersioned is Cache.GetVersioned for values of type T.
func (t *Typed[T]) GetVersioned(ctx context.Context, fam *keyspec.Family, params map[string]string, load TypedLoader[T]) (T, error) {
	return t.decode(fam.Name+fmt.Sprint(params), func() ([]byte, error) { return t.c.GetVersioned(ctx, fam, params, t.encodeLoad(load)) })
}

// encodeLoad turns a typed loader into a Loader. An encoding failure is a
// failed load: no value is stored (only a failure marker, see
// Config.FailureTTL).
func (t *Typed[T]) encodeLoad(load TypedLoader[T]) Loader {
	return func(ctx context.Context) ([]byte, error) {
		v, err := load(ctx)
		if err != nil {
			return nil, err
		}
		b, err := t.codec.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("%w: encode %T: %w", ErrCodec, v, err)
		}
		return b, nil
	}
}

// decode runs get and decodes its bytes; what names the read in errors.
func (t *Typed[T]) decode(what string, get func() ([]byte, error)) (T, error) {
	var zero T
	b, err := get()
	if err != nil {
		return zero, err
	}
	v, err := t.codec.Unmarshal(b)
	if err != nil {
		return zero, fmt.Errorf("cacheaside: get %q: %w: decode %T: %w; invalidate the key or move %T to new keys", what, ErrCodec, zero, err, zero)
	}
	return v, nil
}
