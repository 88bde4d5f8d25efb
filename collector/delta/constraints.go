package delta

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// ErrConstraint means a commit would add rows that a table's CHECK
// constraint or column invariant does not provably accept: the commit is
// refused (PROTOCOL.md: writers MUST abort such a transaction).
var ErrConstraint = errors.New("rows not proven to satisfy a table constraint")

// constraint is a CHECK constraint (delta.constraints.<name> in the
// configuration) or a column invariant (delta.invariants in a column's
// metadata), parsed.
type constraint struct {
	name string
	expr cexpr
}

// tableConstraints parses a table's constraints. An expression outside the
// subset pilake evaluates is an error wrapping ErrUnsupported: pilake
// cannot enforce it, so it must not write.
func tableConstraints(m Metadata) ([]constraint, error) {
	var out []constraint
	for _, k := range slices.Sorted(mapKeys(m.Configuration)) {
		if name, ok := strings.CutPrefix(k, "delta.constraints."); ok {
			e, err := parseConstraint(m.Configuration[k])
			if err != nil {
				return nil, fmt.Errorf("CHECK constraint %s (%s): %w: %w", name, m.Configuration[k], ErrUnsupported, err)
			}
			out = append(out, constraint{name: name, expr: e})
		}
	}
	if m.SchemaString == "" {
		return out, nil
	}
	schema, err := ParseSchema(m.SchemaString)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorruptLog, err)
	}
	for _, f := range schema.Fields {
		raw, ok := f.Metadata["delta.invariants"].(string)
		if !ok {
			continue
		}
		var inv struct {
			Expression struct {
				Expression string `json:"expression"`
			} `json:"expression"`
		}
		if err := json.Unmarshal([]byte(raw), &inv); err != nil {
			return nil, fmt.Errorf("invariant of column %s: %w: %v", f.Name, ErrUnsupported, err)
		}
		e, err := parseConstraint(inv.Expression.Expression)
		if err != nil {
			return nil, fmt.Errorf("invariant of column %s (%s): %w: %w", f.Name, inv.Expression.Expression, ErrUnsupported, err)
		}
		out = append(out, constraint{name: "invariant " + f.Name, expr: e})
	}
	return out, nil
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// checkConstraints proves from each added file's statistics that every row
// satisfies every constraint; an add it cannot prove (no statistics, nulls
// in a referenced column, a range that straddles the bound) makes the
// commit fail with ErrConstraint. The proof is sound: a file it accepts
// holds only rows that satisfy the constraint; a file of valid rows may be
// refused when its ranges are too wide to prove it.
func checkConstraints(cs []constraint, schema StructType, actions []Action) error {
	if len(cs) == 0 {
		return nil
	}
	for _, a := range actions {
		if a.Add == nil || !a.Add.DataChange {
			continue // compaction rewrites rows already checked
		}
		st, err := a.Add.ParsedStats()
		if err != nil {
			return fmt.Errorf("file %s: %w: %w", a.Add.Path, ErrConstraint, err)
		}
		if st.NumRecords == 0 {
			continue
		}
		env := statsEnv{st: st, schema: schema, part: a.Add.PartitionValues}
		for _, c := range cs {
			if c.expr.eval(env) != triTrue {
				return fmt.Errorf("file %s: %w: %s", a.Add.Path, ErrConstraint, c.name)
			}
		}
	}
	return nil
}

// tri is a three-valued proof result over all rows of a file.
type tri int

const (
	triUnknown tri = iota
	triTrue        // true for every row
	triFalse       // false for every row
)

// statsEnv gives a column's range from a file's statistics.
type statsEnv struct {
	st     Stats
	schema StructType
	part   map[string]string
}

// bounds returns a column's [lo, hi] for numbers and timestamps (µs), or
// ok=false when it is unknown or the column holds nulls.
func (e statsEnv) bounds(col string) (lo, hi float64, typ string, ok bool) {
	f, found := e.schema.Field(col)
	if !found {
		return 0, 0, "", false
	}
	if n, has := e.st.NullCount[col]; !has || n != 0 {
		if _, isPart := e.part[col]; !isPart {
			return 0, 0, f.Type, false
		}
	}
	if v, isPart := e.part[col]; isPart {
		x, err := strconv.ParseFloat(v, 64)
		if err != nil || f.Type == "string" {
			return 0, 0, f.Type, false
		}
		return x, x, f.Type, true
	}
	mn, ok1 := e.st.MinValues[col]
	mx, ok2 := e.st.MaxValues[col]
	if !ok1 || !ok2 {
		return 0, 0, f.Type, false
	}
	switch f.Type {
	case "timestamp", "timestamp_ntz":
		a, err1 := ParseStatsTime(mn)
		b, err2 := ParseStatsTime(mx)
		if err1 != nil || err2 != nil {
			return 0, 0, f.Type, false
		}
		// Statistics are truncated to milliseconds: the maximum may be up
		// to 999 µs more.
		return float64(a), float64(b + 999), f.Type, true
	case "integer", "long", "short", "byte", "double", "float":
		a, ok1 := toFloat(mn)
		b, ok2 := toFloat(mx)
		if !ok1 || !ok2 || math.IsNaN(a) || math.IsNaN(b) {
			return 0, 0, f.Type, false
		}
		return a, b, f.Type, true
	}
	return 0, 0, f.Type, false
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int64:
		return float64(x), true
	}
	return 0, false
}

// cexpr is a parsed constraint expression.
type cexpr interface{ eval(statsEnv) tri }

type andExpr struct{ a, b cexpr }
type orExpr struct{ a, b cexpr }
type notExpr struct{ a cexpr }
type notNullExpr struct {
	col  string
	null bool // IS NULL instead of IS NOT NULL
}
type cmpExpr struct {
	col     string
	op      string // = <> < <= > >=
	lit     float64
	litTime bool // the literal was a timestamp string (µs)
	flipped bool // literal op column
}

func (e andExpr) eval(env statsEnv) tri {
	a, b := e.a.eval(env), e.b.eval(env)
	switch {
	case a == triTrue && b == triTrue:
		return triTrue
	case a == triFalse || b == triFalse:
		return triFalse
	}
	return triUnknown
}

func (e orExpr) eval(env statsEnv) tri {
	a, b := e.a.eval(env), e.b.eval(env)
	switch {
	case a == triTrue || b == triTrue:
		return triTrue
	case a == triFalse && b == triFalse:
		return triFalse
	}
	return triUnknown
}

func (e notExpr) eval(env statsEnv) tri {
	switch e.a.eval(env) {
	case triTrue:
		return triFalse
	case triFalse:
		return triTrue
	}
	return triUnknown
}

func (e notNullExpr) eval(env statsEnv) tri {
	if _, isPart := env.part[e.col]; isPart {
		return map[bool]tri{false: triTrue, true: triFalse}[e.null]
	}
	n, ok := env.st.NullCount[e.col]
	switch {
	case !ok:
		return triUnknown
	case n == 0:
		return map[bool]tri{false: triTrue, true: triFalse}[e.null]
	case n == env.st.NumRecords:
		return map[bool]tri{false: triFalse, true: triTrue}[e.null]
	}
	return triUnknown
}

func (e cmpExpr) eval(env statsEnv) tri {
	lo, hi, typ, ok := env.bounds(e.col)
	if !ok {
		return triUnknown
	}
	isTime := typ == "timestamp" || typ == "timestamp_ntz"
	if isTime != e.litTime {
		return triUnknown // a timestamp compared with a number, or the reverse
	}
	op := e.op
	if e.flipped {
		op = map[string]string{"<": ">", "<=": ">=", ">": "<", ">=": "<=", "=": "=", "<>": "<>"}[op]
	}
	x := e.lit
	switch op {
	case ">":
		return rangeTri(lo > x, hi <= x)
	case ">=":
		return rangeTri(lo >= x, hi < x)
	case "<":
		return rangeTri(hi < x, lo >= x)
	case "<=":
		return rangeTri(hi <= x, lo > x)
	case "=":
		return rangeTri(lo == x && hi == x, x < lo || x > hi)
	case "<>":
		return rangeTri(x < lo || x > hi, lo == x && hi == x)
	}
	return triUnknown
}

func rangeTri(allTrue, allFalse bool) tri {
	switch {
	case allTrue:
		return triTrue
	case allFalse:
		return triFalse
	}
	return triUnknown
}

// parseConstraint parses the subset of Spark SQL boolean expressions pilake
// can prove from statistics: column comparisons with number or timestamp
// literals (= == <> != < <= > >=), BETWEEN … AND …, IS [NOT] NULL, AND, OR,
// NOT and parentheses. Column names may be `quoted`.
func parseConstraint(s string) (cexpr, error) {
	toks, err := lexConstraint(s)
	if err != nil {
		return nil, err
	}
	p := &cparser{toks: toks}
	e, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q", p.toks[p.i].s)
	}
	return e, nil
}

type ctok struct {
	kind byte // 'i' identifier, 'n' number, 's' string, 'o' operator or parenthesis
	s    string
}

func lexConstraint(s string) ([]ctok, error) {
	var out []ctok
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return nil, errors.New("unterminated `")
			}
			out = append(out, ctok{'i', s[i+1 : i+1+j]})
			i += j + 2
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unterminated '")
			}
			out = append(out, ctok{'s', s[i+1 : i+1+j]})
			i += j + 2
		case c >= '0' && c <= '9' || c == '.' || (c == '-' && i+1 < len(s) && (s[i+1] >= '0' && s[i+1] <= '9')):
			j := i + 1
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E') {
				j++
			}
			out = append(out, ctok{'n', s[i:j]})
			i = j
		case unicode.IsLetter(rune(c)) || c == '_':
			j := i + 1
			for j < len(s) && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])) || s[j] == '_') {
				j++
			}
			out = append(out, ctok{'i', s[i:j]})
			i = j
		default:
			for _, op := range []string{"<=", ">=", "<>", "!=", "==", "=", "<", ">", "(", ")"} {
				if strings.HasPrefix(s[i:], op) {
					out = append(out, ctok{'o', op})
					i += len(op)
					goto next
				}
			}
			return nil, fmt.Errorf("unexpected %q", c)
		next:
		}
	}
	return out, nil
}

type cparser struct {
	toks []ctok
	i    int
}

func (p *cparser) peekWord(w string) bool {
	return p.i < len(p.toks) && p.toks[p.i].kind == 'i' && strings.EqualFold(p.toks[p.i].s, w)
}

func (p *cparser) or() (cexpr, error) {
	a, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peekWord("OR") {
		p.i++
		b, err := p.and()
		if err != nil {
			return nil, err
		}
		a = orExpr{a, b}
	}
	return a, nil
}

func (p *cparser) and() (cexpr, error) {
	a, err := p.not()
	if err != nil {
		return nil, err
	}
	for p.peekWord("AND") {
		p.i++
		b, err := p.not()
		if err != nil {
			return nil, err
		}
		a = andExpr{a, b}
	}
	return a, nil
}

func (p *cparser) not() (cexpr, error) {
	if p.peekWord("NOT") {
		p.i++
		a, err := p.not()
		if err != nil {
			return nil, err
		}
		return notExpr{a}, nil
	}
	return p.cmp()
}

// operand is a column or a literal.
type operand struct {
	col    string
	num    float64
	isTime bool
	isLit  bool
}

func (p *cparser) operand() (operand, error) {
	if p.i >= len(p.toks) {
		return operand{}, errors.New("unexpected end")
	}
	t := p.toks[p.i]
	p.i++
	switch t.kind {
	case 'n':
		x, err := strconv.ParseFloat(t.s, 64)
		if err != nil {
			return operand{}, fmt.Errorf("number %q", t.s)
		}
		return operand{num: x, isLit: true}, nil
	case 's':
		return operand{}, fmt.Errorf("string literal %q outside TIMESTAMP '…'", t.s)
	case 'i':
		if strings.EqualFold(t.s, "TIMESTAMP") && p.i < len(p.toks) && p.toks[p.i].kind == 's' {
			lit := p.toks[p.i].s
			p.i++
			for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999", "2006-01-02 15:04:05", "2006-01-02"} {
				if ts, err := time.Parse(layout, lit); err == nil {
					return operand{num: float64(ts.UnixMicro()), isTime: true, isLit: true}, nil
				}
			}
			return operand{}, fmt.Errorf("timestamp %q", lit)
		}
		switch strings.ToUpper(t.s) {
		case "AND", "OR", "NOT", "IS", "NULL", "BETWEEN", "TRUE", "FALSE", "IN", "LIKE":
			return operand{}, fmt.Errorf("unexpected %s", t.s)
		}
		return operand{col: t.s}, nil
	}
	return operand{}, fmt.Errorf("unexpected %q", t.s)
}

func (p *cparser) cmp() (cexpr, error) {
	if p.i < len(p.toks) && p.toks[p.i].s == "(" && p.toks[p.i].kind == 'o' {
		p.i++
		e, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.i >= len(p.toks) || p.toks[p.i].s != ")" {
			return nil, errors.New("missing )")
		}
		p.i++
		return e, nil
	}
	a, err := p.operand()
	if err != nil {
		return nil, err
	}
	if p.peekWord("IS") {
		p.i++
		null := true
		if p.peekWord("NOT") {
			p.i++
			null = false
		}
		if !p.peekWord("NULL") || a.isLit {
			return nil, errors.New("IS [NOT] NULL of a column expected")
		}
		p.i++
		return notNullExpr{col: a.col, null: null}, nil
	}
	if p.peekWord("BETWEEN") {
		p.i++
		lo, err := p.operand()
		if err != nil {
			return nil, err
		}
		if !p.peekWord("AND") {
			return nil, errors.New("BETWEEN without AND")
		}
		p.i++
		hi, err := p.operand()
		if err != nil {
			return nil, err
		}
		if a.isLit || !lo.isLit || !hi.isLit {
			return nil, errors.New("BETWEEN needs a column and two literals")
		}
		return andExpr{cmpExpr{col: a.col, op: ">=", lit: lo.num, litTime: lo.isTime}, cmpExpr{col: a.col, op: "<=", lit: hi.num, litTime: hi.isTime}}, nil
	}
	if p.i >= len(p.toks) || p.toks[p.i].kind != 'o' || p.toks[p.i].s == "(" || p.toks[p.i].s == ")" {
		return nil, errors.New("comparison expected")
	}
	op := p.toks[p.i].s
	p.i++
	switch op {
	case "==":
		op = "="
	case "!=":
		op = "<>"
	}
	b, err := p.operand()
	if err != nil {
		return nil, err
	}
	switch {
	case !a.isLit && b.isLit:
		return cmpExpr{col: a.col, op: op, lit: b.num, litTime: b.isTime}, nil
	case a.isLit && !b.isLit:
		return cmpExpr{col: b.col, op: op, lit: a.num, litTime: a.isTime, flipped: true}, nil
	}
	return nil, errors.New("a comparison of a column with a literal expected")
}
