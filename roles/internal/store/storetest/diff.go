package storetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
)

// This file compares values as the suite means them to be equal (see the
// package doc) and prints the difference as "-want +got" lines. go-cmp does
// the same in tests, but this package is not a test and the dependency
// rules (deps_test.go) keep go-cmp to tests.

var (
	timeType   = reflect.TypeFor[time.Time]()
	rawType    = reflect.TypeFor[json.RawMessage]()
	bigIntType = reflect.TypeFor[*big.Int]()
)

// diff returns "" when want and got are equal after canon, else their
// printed forms line by line, "-" for want and "+" for got.
func diff(want, got any) string {
	w, g := canon(reflect.ValueOf(want)), canon(reflect.ValueOf(got))
	if w.IsValid() == g.IsValid() && (!w.IsValid() || reflect.DeepEqual(w.Interface(), g.Interface())) {
		return ""
	}
	var wb, gb strings.Builder
	dump(&wb, w, "")
	dump(&gb, g, "")
	return lineDiff(strings.Split(wb.String(), "\n"), strings.Split(gb.String(), "\n"))
}

// canon returns a copy of v in the form diff compares: times in UTC
// without a monotonic reading, empty slices and maps nil, JSON raw values
// re-encoded with sorted keys and no white space (numbers as written).
// Unexported fields are copied as they are.
func canon(v reflect.Value) reflect.Value {
	if !v.IsValid() {
		return v
	}
	switch v.Type() {
	case timeType:
		return reflect.ValueOf(v.Interface().(time.Time).UTC())
	case rawType:
		return reflect.ValueOf(canonJSON(v.Interface().(json.RawMessage)))
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(v.Type().Elem())
		p.Elem().Set(canon(v.Elem()))
		return p
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(v.Type()).Elem()
		out.Set(canon(v.Elem()))
		return out
	case reflect.Struct:
		out := reflect.New(v.Type()).Elem()
		out.Set(v)
		for i := range v.NumField() {
			if out.Field(i).CanSet() {
				out.Field(i).Set(canon(v.Field(i)))
			}
		}
		return out
	case reflect.Map:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeMapWithSize(v.Type(), v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), canon(it.Value()))
		}
		return out
	case reflect.Slice:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		out := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			out.Index(i).Set(canon(v.Index(i)))
		}
		return out
	}
	return v
}

// canonJSON re-encodes a JSON value with sorted keys and no white space,
// keeping the spelling of its numbers; what does not parse is kept as it is.
func canonJSON(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var x any
	if d.Decode(&x) != nil {
		return raw
	}
	b, err := json.Marshal(x)
	if err != nil {
		return raw
	}
	return b
}

// dump prints v, one field or element a line.
func dump(b *strings.Builder, v reflect.Value, indent string) {
	if !v.IsValid() {
		b.WriteString("nil")
		return
	}
	switch v.Type() {
	case timeType:
		b.WriteString(v.Interface().(time.Time).Format(time.RFC3339Nano))
		return
	case rawType:
		if v.IsNil() {
			b.WriteString("nil")
		} else {
			b.WriteString("json:" + string(v.Bytes()))
		}
		return
	case bigIntType:
		if v.IsNil() {
			b.WriteString("nil")
		} else {
			b.WriteString("0x" + v.Interface().(*big.Int).Text(16))
		}
		return
	}
	in := indent + "\t"
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		b.WriteString("&")
		dump(b, v.Elem(), indent)
	case reflect.Interface:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		dump(b, v.Elem(), indent)
	case reflect.Struct:
		b.WriteString(v.Type().String() + "{")
		n := 0
		for i := range v.NumField() {
			f := v.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			b.WriteString("\n" + in + f.Name + ": ")
			dump(b, v.Field(i), in)
			b.WriteString(",")
			n++
		}
		if n > 0 {
			b.WriteString("\n" + indent)
		}
		b.WriteString("}")
	case reflect.Map:
		if v.IsNil() {
			b.WriteString("nil")
			return
		}
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		b.WriteString("map{")
		for _, k := range keys {
			b.WriteString("\n" + in)
			dump(b, k, in)
			b.WriteString(": ")
			dump(b, v.MapIndex(k), in)
			b.WriteString(",")
		}
		if len(keys) > 0 {
			b.WriteString("\n" + indent)
		}
		b.WriteString("}")
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			b.WriteString("nil")
			return
		}
		b.WriteString("[")
		for i := range v.Len() {
			b.WriteString("\n" + in)
			dump(b, v.Index(i), in)
			b.WriteString(",")
		}
		if v.Len() > 0 {
			b.WriteString("\n" + indent)
		}
		b.WriteString("]")
	case reflect.String:
		b.WriteString(strconv.Quote(v.String()))
	default:
		fmt.Fprint(b, v)
	}
}

// lineDiff returns the lines of want and got as a longest-common-subsequence
// diff: " " for a line in both, "-" for want only, "+" for got only.
func lineDiff(want, got []string) string {
	// lcs[i][j] is the length of the longest common subsequence of
	// want[i:] and got[j:].
	lcs := make([][]int, len(want)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(got)+1)
	}
	for i := len(want) - 1; i >= 0; i-- {
		for j := len(got) - 1; j >= 0; j-- {
			if want[i] == got[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var b strings.Builder
	i, j := 0, 0
	for i < len(want) || j < len(got) {
		switch {
		case i < len(want) && j < len(got) && want[i] == got[j]:
			b.WriteString("  " + want[i] + "\n")
			i, j = i+1, j+1
		case j == len(got) || i < len(want) && lcs[i+1][j] >= lcs[i][j+1]:
			b.WriteString("- " + want[i] + "\n")
			i++
		default:
			b.WriteString("+ " + got[j] + "\n")
			j++
		}
	}
	return b.String()
}
