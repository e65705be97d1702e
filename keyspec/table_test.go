package keyspec

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const tablesHead = "version: 1\nclasses:\n  standard: {ttl: 1m}\nfamilies:\n" +
	"  product: {template: \"product:{id}\", class: standard}\n" +
	"  price: {template: \"price:{sku}:{currency}\", class: standard}\n" +
	"events:\n  product.updated: {attributes: [id], invalidates: [product]}\n" +
	"  price.changed: {attributes: [sku, currency], invalidates: [{family: price}]}\n"

func TestTablesDecode(t *testing.T) {
	t.Parallel()
	p, err := Parse("p.yaml", []byte(tablesHead+"tables:\n"+
		"  public.products: {event: product.updated, attributes: {id: id}}\n"+
		"  shop.prices: {event: price.changed, attributes: {sku: product_id, currency: currency}}\n"))
	require.NoError(t, err)
	require.Equal(t, []string{"public.products", "shop.prices"}, p.TableNames())
	tb := p.Tables["shop.prices"]
	require.Equal(t, "shop", tb.Schema)
	require.Equal(t, "prices", tb.Name)
	require.Equal(t, "price.changed", tb.Event)
	require.Equal(t, map[string]string{"sku": "product_id", "currency": "currency"}, tb.Attributes)
	require.Equal(t, []string{"currency", "product_id"}, tb.Columns())
	notes := p.TableNotes()
	require.Len(t, notes, 2)
	require.Contains(t, notes[1], "tables.shop.prices: ")
	require.Contains(t, notes[1], "REPLICA IDENTITY")
	require.Contains(t, notes[1], "currency, product_id")

	p, err = Parse("p.yaml", []byte(tablesHead))
	require.NoError(t, err)
	require.Empty(t, p.Tables)
	require.NotNil(t, Default().Tables)
}

func TestTablesLint(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ tables, want string }{
		{"  products: {event: product.updated, attributes: {id: id}}\n", "name the table as schema.table"},
		{"  a.b.c: {event: product.updated, attributes: {id: id}}\n", "name the table as schema.table"},
		{"  public.products: {attributes: {id: id}}\n", "tables.public.products.event: is required"},
		{"  public.products: {event: nope, attributes: {id: id}}\n", `unknown event "nope"`},
		{"  public.products: {event: product.updated}\n", "tables.public.products.attributes: is required"},
		{"  public.products: {event: product.updated, attributes: {}}\n", "needs attribute id, which no column gives"},
		{"  public.prices: {event: price.changed, attributes: {sku: product_id}}\n", "needs attribute currency,"},
		{"  public.products: {event: product.updated, attributes: {id: id, sku: sku}}\n", `has no attribute "sku"`},
		{"  public.products: {event: product.updated, attributes: {id: ~}}\n", "tables.public.products.attributes.id: is empty; give a column name"},
		{"  public.products: {event: product.updated, attributes: [id]}\n", "must map event attributes to columns"},
		{"  public.products: {event: product.updated, attributes: {id: id}, key: id}\n", `unknown field "key"`},
		{"  public.products:\n", "a table needs an event"},
	} {
		_, err := Parse("p.yaml", []byte(tablesHead+"tables:\n"+c.tables))
		require.Error(t, err, c.tables)
		require.ErrorContains(t, err, c.want, c.tables)
	}
}

// Lint warns about a family that a TRUNCATE of a mapped table cannot
// invalidate: its whole-family pattern would be unsafe.
func TestTablesTruncateWarning(t *testing.T) {
	t.Parallel()
	src := strings.Replace(tablesHead, "families:\n", "families:\n  tenant_doc: {template: \"{tenant}.doc.{id}\", class: standard}\n", 1) +
		"  doc.changed: {attributes: [tenant, id], invalidates: [tenant_doc, product]}\n" +
		"tables:\n" +
		"  public.products: {event: product.updated, attributes: {id: id}}\n" +
		"  public.docs: {event: doc.changed, attributes: {tenant: tenant_id, id: id}}\n"
	p, err := Parse("p.yaml", []byte(src))
	require.NoError(t, err)
	var got []string
	for _, w := range p.Warnings() {
		if strings.Contains(w.Msg, "TRUNCATE") {
			got = append(got, w.Field+": "+w.Msg)
		}
	}
	require.Len(t, got, 1, "only tenant_doc: product deletes whole")
	require.Contains(t, got[0], `tables.public.docs.event: a TRUNCATE of the table cannot invalidate family "tenant_doc"`)
}
