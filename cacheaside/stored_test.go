package cacheaside_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/invalidator/invalidator/cacheaside"
)

func TestDecodeStored(t *testing.T) {
	t.Parallel()

	k, v, err := cacheaside.DecodeStored(cacheaside.EncodeValue([]byte("lorem")))
	require.NoError(t, err)
	require.Equal(t, cacheaside.StoredValue, k)
	require.Equal(t, "lorem", string(v))

	k, _, err = cacheaside.DecodeStored([]byte("n"))
	require.NoError(t, err)
	require.Equal(t, cacheaside.StoredNotFound, k)
	k, _, err = cacheaside.DecodeStored([]byte("lABCDEF"))
	require.NoError(t, err)
	require.Equal(t, cacheaside.StoredLease, k)
	k, _, err = cacheaside.DecodeStored([]byte("ftimeout"))
	require.NoError(t, err)
	require.Equal(t, cacheaside.StoredFailure, k)

	_, _, err = cacheaside.DecodeStored([]byte("xyz"))
	require.ErrorIs(t, err, cacheaside.ErrForeignValue)
}
