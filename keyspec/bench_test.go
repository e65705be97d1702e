package keyspec

import (
	"fmt"
	"strings"
	"testing"
)

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

// benchPolicy writes a policy of n families "obj:{id}:{a}:p<i>:{name}" that
// differ only in a literal in the middle of their keys, the shape that made
// every load pay for an intersection per pair. Shape "declared" declares
// every parameter, with the large expressions real policies use; shape
// "half" declares id and name of every other family and leaves the rest
// undeclared, so lint has captures to find.
func benchPolicy(n int, shape string) []byte {
	var b strings.Builder
	b.WriteString("version: 1\nclasses: {standard: {ttl: 10m}}\nfamilies:\n")
	for i := range n {
		switch shape {
		case "declared":
			fmt.Fprintf(&b, "  fam%d:\n    template: \"obj:{id}:{a}:p%d:{name}\"\n    class: standard\n    params:\n"+
				"      id: {match: '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'}\n"+
				"      a: {match: '[a-z0-9_]{1,64}'}\n"+
				"      name: {match: '[a-z]+(-[a-z0-9]{1,20}){0,6}'}\n", i, i)
		case "half":
			fmt.Fprintf(&b, "  fam%d:\n    template: \"obj:{id}:{a%d}:p%d:{name}\"\n    class: standard\n", i, i%5, i)
			if i%2 == 1 {
				b.WriteString("    params:\n      id: {match: '[0-9a-f]{8}-[0-9a-f]{4}'}\n      name: {match: '[a-z]+(-[a-z0-9]+){0,6}'}\n")
			}
		default:
			panic(shape)
		}
	}
	return []byte(b.String())
}

// BenchmarkParse is the cost of loading a policy, which every worker start,
// SIGHUP, enqueue.New and CLI enqueue pays.
func BenchmarkParse(b *testing.B) {
	for _, shape := range []string{"declared", "half"} {
		for _, n := range []int{60, 200} {
			src := benchPolicy(n, shape)
			b.Run(fmt.Sprintf("%s-%d", shape, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := Parse("p.yaml", src); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkWarnings is the cost of policy lint beyond loading: the
// capture warnings, which intersect the key languages of every pair of
// families that may share keys.
func BenchmarkWarnings(b *testing.B) {
	for _, shape := range []string{"declared", "half"} {
		for _, n := range []int{60, 200} {
			p, err := Parse("p.yaml", benchPolicy(n, shape))
			if err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("%s-%d", shape, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					p.Warnings()
				}
			})
		}
	}
}
