package keyspec

import "testing"

func benchFamily(b *testing.B) *Family {
	b.Helper()
	f, err := NewFamily("product_price", "price:{sku}:{currency}", FamilyOptions{HashTag: "sku"})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

func BenchmarkFamilyKey(b *testing.B) {
	f := benchFamily(b)
	params := map[string]string{"sku": "42", "currency": "EUR"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Key(params); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFamilyPattern(b *testing.B) {
	f := benchFamily(b)
	params := map[string]string{"sku": "42"} // every currency of one product
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Pattern(params); err != nil {
			b.Fatal(err)
		}
	}
}
