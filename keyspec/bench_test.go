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

// BenchmarkMatcher is the per-key cost of filtering a family scan: one
// key of the family, one of another family the glob also matches.
func BenchmarkMatcher(b *testing.B) {
	f, err := NewFamily("product_price", "product:{sku}:price:{currency}", FamilyOptions{
		Params: map[string]Param{"sku": {Match: "[0-9]+"}, "currency": {Match: "[A-Z]{3}"}}})
	if err != nil {
		b.Fatal(err)
	}
	m, err := f.Matcher(map[string]string{})
	if err != nil {
		b.Fatal(err)
	}
	for _, key := range []string{"product:123456:price:EUR", "product:123456:price:EUR:history"} {
		b.Run(key, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Match(key)
			}
		})
	}
}

// BenchmarkFamilyKeyDeclared is BenchmarkFamilyKey with both parameters
// declared: the cost of checking the values.
func BenchmarkFamilyKeyDeclared(b *testing.B) {
	f, err := NewFamily("product_price", "price:{sku}:{currency}", FamilyOptions{HashTag: "sku",
		Params: map[string]Param{"sku": {Match: "[0-9]+"}, "currency": {Match: "[A-Z]{3}"}}})
	if err != nil {
		b.Fatal(err)
	}
	params := map[string]string{"sku": "42", "currency": "EUR"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := f.Key(params); err != nil {
			b.Fatal(err)
		}
	}
}
