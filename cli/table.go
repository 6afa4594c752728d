package cli

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// printList prints what a list command found: as JSON with -o json (an empty
// list is [], never null), else as a table under header (tab-separated column
// names) with one row per item, or the sentence empty when there are none.
func printList[T any](out io.Writer, output string, items []T, empty, header string, row func(T) []any) error {
	if output == "json" {
		if items == nil {
			items = []T{}
		}
		return writeJSON(out, items)
	}
	if len(items) == 0 {
		_, err := fmt.Fprintln(out, empty)
		return err
	}
	w := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, header)
	for _, it := range items {
		for i, cell := range row(it) {
			if i > 0 {
				io.WriteString(w, "\t")
			}
			fmt.Fprint(w, cell)
		}
		io.WriteString(w, "\n")
	}
	return w.Flush()
}
