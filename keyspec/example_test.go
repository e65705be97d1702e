package keyspec_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/invalidator/invalidator/keyspec"
)

func ExampleFamily_Key() {
	profile, err := keyspec.NewFamily("user_profile", "user:{id}:profile", keyspec.FamilyOptions{HashTag: "id"})
	if err != nil {
		panic(err)
	}
	key, _ := profile.Key(map[string]string{"id": "42"})
	fmt.Println(key)

	_, err = profile.Key(map[string]string{"uid": "42"})
	fmt.Println(errors.Is(err, keyspec.ErrUnknownParam))
	// Output:
	// user:{42}:profile
	// true
}

func ExampleFamily_Pattern() {
	prices, _ := keyspec.NewFamily("product_price", "product:{sku}:price:{currency}", keyspec.FamilyOptions{})

	// Every price of one product.
	pattern, _ := prices.Pattern(map[string]string{"sku": "123"})
	fmt.Println(pattern)

	// A value full of glob metacharacters matches only itself.
	pattern, _ = prices.Pattern(map[string]string{"sku": "*", "currency": "EUR"})
	fmt.Println(pattern)

	tenants, _ := keyspec.NewFamily("tenant_user", "{tenant}:user:{id}", keyspec.FamilyOptions{})
	_, err := tenants.Pattern(map[string]string{"id": "7"})
	fmt.Println(errors.Is(err, keyspec.ErrUnsafePattern))
	// Output:
	// product:123:price:*
	// product:\*:price:EUR
	// true
}

func ExampleFamily_VersionKey() {
	feed, _ := keyspec.NewFamily("user_feed", "feed:{user_id}", keyspec.FamilyOptions{
		Strategy: keyspec.StrategyVersion, HashTag: "user_id", TTL: 15 * time.Minute,
	})
	params := map[string]string{"user_id": "42"}
	ver, _ := feed.VersionKey(params)
	data, _ := feed.DataKey(params, 1732700000123)
	fmt.Println(ver)
	fmt.Println(data)
	// Output:
	// feed:{42}#ver
	// feed:{42}#v1732700000123
}

func ExampleFamily_JitteredTTL() {
	f, _ := keyspec.NewFamily("user_profile", "user:{id}:profile", keyspec.FamilyOptions{TTL: 10 * time.Minute, Jitter: 0.2})
	r := rand.New(rand.NewPCG(1, 2))
	ttl := f.JitteredTTL(r)
	fmt.Println(ttl >= 8*time.Minute && ttl <= 12*time.Minute)
	// Output:
	// true
}

func ExampleParse() {
	policy, err := keyspec.Parse("policy.yaml", []byte(`
version: 1
classes:
  critical: {ttl: 1m, max_retry: 25}
  standard: {ttl: 10m, jitter: 0.2}
families:
  product_price:
    template: "product:{sku}:price:{currency}"
    class: critical
    ttl: 30s
`))
	if err != nil {
		panic(err)
	}
	price, _ := policy.Family("product_price")
	fmt.Println(price.TTL, policy.ClassOf(price).Queue, policy.DefaultClass)
	fmt.Println(policy.Queues())
	// Output:
	// 30s invalidator-critical standard
	// [invalidator-critical invalidator-standard]
}

func ExampleParse_errors() {
	_, err := keyspec.Parse("policy.yaml", []byte(`version: 1
classes:
  standard: {ttl: 10}
families:
  user:
    template: "user:{id"
    class: gold
`))
	fmt.Println(err)
	// Output:
	// policy.yaml:3:19: classes.standard.ttl: invalid duration "10"; use a Go duration such as "5m" or "250ms"
	// policy.yaml:6:15: families.user.template: invalid key template "user:{id" at offset 5: unclosed '{'; close the parameter with '}'
	// policy.yaml:7:12: families.user.class: unknown class "gold"; declared classes: standard
}

func ExampleFamily_Matcher() {
	// A glob '*' matches ':' too: "product:*" also matches price keys.
	// Declaring what an id is keeps a pattern delete to the family.
	product, _ := keyspec.NewFamily("product", "product:{id}", keyspec.FamilyOptions{
		Params: map[string]keyspec.Param{"id": {Match: "[0-9]+"}},
	})
	m, _ := product.Matcher(nil) // every product
	fmt.Println(m.Pattern(), m.Filters())
	for _, key := range []string{"product:7", "product:7:price:EUR", "product:7:details"} {
		fmt.Println(key, m.Match(key))
	}

	// A value outside the declaration is refused when a key is rendered.
	_, err := product.Key(map[string]string{"id": "7:price:EUR"})
	fmt.Println(errors.Is(err, keyspec.ErrInvalidParam))
	// Output:
	// product:* true
	// product:7 true
	// product:7:price:EUR false
	// product:7:details false
	// true
}
