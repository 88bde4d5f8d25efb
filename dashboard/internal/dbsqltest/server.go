package dbsqltest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/apache/thrift/lib/go/thrift"
)

// Field ids and enum values of TCLIService (databricks-sql-go v1.14.0,
// internal/cli_service): read from the driver, written down here.
const (
	protocolV8 = int32(42248) // SPARK_CLI_SERVICE_PROTOCOL_V8: parameterized queries

	statusSuccess = int32(0)
	stateFinished = int32(2)
	stateError    = int32(5)

	typeInt    = int32(3)
	typeBigint = int32(4)
	typeDouble = int32(6)
	typeString = int32(7)

	columnBasedSet = int32(1)
)

// Param is one bound parameter as the driver sent it.
type Param struct {
	Type  string  // the Spark type name the driver chose ("BIGINT", "INTEGER", "STRING", …)
	Value *string // nil for NULL
}

// Statement is one ExecuteStatement the warehouse received.
type Statement struct {
	SQL    string
	Params []Param
	// Err is the Spark error the warehouse answered with, "" when it ran.
	Err string
}

// Warehouse is the stand-in SQL warehouse.
type Warehouse struct {
	*httptest.Server
	// HTTPPath is the warehouse's path (/sql/1.0/warehouses/test).
	HTTPPath string
	// Token is the bearer token every Thrift call must carry.
	Token string

	db *sql.DB
	t  testing.TB

	mu       sync.Mutex
	sessions map[string]bool
	stmts    []Statement
	fail     string
}

// New starts a warehouse (plain HTTP on 127.0.0.1) that runs statements on db
// and requires token. It stops when the test ends.
func New(t testing.TB, db *sql.DB, token string) *Warehouse {
	w := NewHandler(t, db, token)
	w.Server = httptest.NewServer(w)
	t.Cleanup(w.Close)
	return w
}

// NewHandler is New without a server: the caller serves w (ServeHTTP), e.g.
// over TLS under a workspace's host name. Server is nil.
func NewHandler(t testing.TB, db *sql.DB, token string) *Warehouse {
	return &Warehouse{HTTPPath: "/sql/1.0/warehouses/test", Token: token, db: db, t: t, sessions: map[string]bool{}}
}

// DSN is a databricks-sql-go DSN for this warehouse (token auth, plain HTTP,
// telemetry off).
func (w *Warehouse) DSN() string {
	host := strings.TrimPrefix(w.URL, "http://")
	return "http://token:" + w.Token + "@" + host + w.HTTPPath + "?enableTelemetry=false"
}

// Statements returns the statements received so far.
func (w *Warehouse) Statements() []Statement {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Statement(nil), w.stmts...)
}

// FailWith makes every following statement fail with msg (as the warehouse's
// error text), until called with "".
func (w *Warehouse) FailWith(msg string) {
	w.mu.Lock()
	w.fail = msg
	w.mu.Unlock()
}

func (w *Warehouse) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != w.HTTPPath {
		http.NotFound(rw, r)
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+w.Token {
		http.Error(rw, "invalid access token", http.StatusUnauthorized)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	conf := &thrift.TConfiguration{}
	in := thrift.NewTBinaryProtocolConf(&thrift.TMemoryBuffer{Buffer: bytes.NewBuffer(body)}, conf)
	name, _, seq, err := in.ReadMessageBegin(ctx)
	if err != nil {
		http.Error(rw, "reading thrift message: "+err.Error(), http.StatusBadRequest)
		return
	}
	args, err := readStruct(ctx, in)
	if err != nil {
		http.Error(rw, "reading thrift args: "+err.Error(), http.StatusBadRequest)
		return
	}
	req := args.st(1)
	var resp W
	switch name {
	case "OpenSession":
		guid := newID()
		w.mu.Lock()
		w.sessions[string(guid)] = true
		w.mu.Unlock()
		resp = W{{1, thrift.STRUCT, okStatus()}, {2, thrift.I32, protocolV8},
			{3, thrift.STRUCT, W{{1, thrift.STRUCT, handleID(guid)}}}}
	case "CloseSession", "CloseOperation", "CancelOperation":
		resp = W{{1, thrift.STRUCT, okStatus()}}
	case "ExecuteStatement":
		guid := req.st(1).st(1).str(1)
		w.mu.Lock()
		open := w.sessions[guid]
		w.mu.Unlock()
		if !open {
			w.t.Errorf("dbsqltest: ExecuteStatement on a session that was never opened")
		}
		resp = w.execute(ctx, req)
	case "GetOperationStatus":
		resp = W{{1, thrift.STRUCT, okStatus()}, {2, thrift.I32, stateFinished}}
	default:
		w.t.Errorf("dbsqltest: the driver called %s, which this stand-in does not answer", name)
		http.Error(rw, "not implemented: "+name, http.StatusNotImplemented)
		return
	}
	buf := thrift.NewTMemoryBuffer()
	out := thrift.NewTBinaryProtocolConf(buf, conf)
	err = out.WriteMessageBegin(ctx, name, thrift.REPLY, seq)
	if err == nil {
		err = writeStruct(ctx, out, W{{0, thrift.STRUCT, resp}})
	}
	if err == nil {
		err = out.WriteMessageEnd(ctx)
	}
	if err == nil {
		err = out.Flush(ctx)
	}
	if err != nil {
		w.t.Errorf("dbsqltest: writing %s reply: %v", name, err)
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "application/x-thrift")
	_, _ = rw.Write(buf.Bytes())
}

func okStatus() W { return W{{1, thrift.I32, statusSuccess}} }

func newID() []byte {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return b
}

func handleID(guid []byte) W {
	return W{{1, thrift.STRING, guid}, {2, thrift.STRING, []byte("secret")}}
}

// execute checks the statement by Spark's rules, runs it on SQLite and
// answers with direct results (status, metadata, all rows, closed).
func (w *Warehouse) execute(ctx context.Context, req S) W {
	st := Statement{SQL: req.str(2)}
	for _, p := range req.list(1288) {
		ps, _ := p.(S)
		prm := Param{Type: ps.str(3)}
		if v, ok := ps.st(4)[1].(string); ok {
			prm.Value = &v
		}
		st.Params = append(st.Params, prm)
	}
	w.mu.Lock()
	fail := w.fail
	w.mu.Unlock()
	var names []string
	var cols [][]any
	err := checkSpark(st.SQL, st.Params)
	if err == nil && fail != "" {
		err = &SparkError{Class: "INTERNAL_ERROR", State: "XX000", Msg: fail}
	}
	if err == nil {
		names, cols, err = w.run(ctx, st)
	}
	op := W{{1, thrift.STRUCT, handleID(newID())}, {2, thrift.I32, int32(0)}, {3, thrift.BOOL, err == nil}}
	if err != nil {
		st.Err = err.Error()
		w.mu.Lock()
		w.stmts = append(w.stmts, st)
		w.mu.Unlock()
		state, msg := "42000", err.Error()
		if se, ok := err.(*SparkError); ok {
			state = se.State
		}
		return W{{1, thrift.STRUCT, okStatus()}, {2, thrift.STRUCT, op}, {1281, thrift.STRUCT, W{
			{1, thrift.STRUCT, W{{1, thrift.STRUCT, okStatus()}, {2, thrift.I32, stateError}, {3, thrift.STRING, state},
				{5, thrift.STRING, msg}, {1281, thrift.STRING, msg}}},
			{4, thrift.STRUCT, W{{1, thrift.STRUCT, okStatus()}}},
		}}}
	}
	w.mu.Lock()
	w.stmts = append(w.stmts, st)
	w.mu.Unlock()
	var descs, tcols []any
	for i, name := range names {
		typ, col := column(cols[i])
		descs = append(descs, W{{1, thrift.STRING, name},
			{2, thrift.STRUCT, W{{1, thrift.LIST, L{thrift.STRUCT, []any{W{{1, thrift.STRUCT, W{{1, thrift.I32, typ}}}}}}}}},
			{3, thrift.I32, int32(i + 1)}})
		tcols = append(tcols, col)
	}
	meta := W{{1, thrift.STRUCT, okStatus()}, {2, thrift.STRUCT, W{{1, thrift.LIST, L{thrift.STRUCT, descs}}}},
		{1281, thrift.I32, columnBasedSet}}
	rowSet := W{{1, thrift.I64, int64(0)}, {2, thrift.LIST, L{thrift.STRUCT, nil}}, {3, thrift.LIST, L{thrift.STRUCT, tcols}}}
	return W{{1, thrift.STRUCT, okStatus()}, {2, thrift.STRUCT, op}, {1281, thrift.STRUCT, W{
		{1, thrift.STRUCT, W{{1, thrift.STRUCT, okStatus()}, {2, thrift.I32, stateFinished}}},
		{2, thrift.STRUCT, meta},
		{3, thrift.STRUCT, W{{1, thrift.STRUCT, okStatus()}, {2, thrift.BOOL, false}, {3, thrift.STRUCT, rowSet}}},
		{4, thrift.STRUCT, W{{1, thrift.STRUCT, okStatus()}}},
	}}}
}

// column turns one result column into its Spark type and a TColumn.
func column(vals []any) (int32, W) {
	kind := typeString
	var hasInt, hasFloat, hasString bool
	for _, v := range vals {
		switch v.(type) {
		case int64:
			hasInt = true
		case float64:
			hasFloat = true
		case string, []byte:
			hasString = true
		}
	}
	switch {
	case hasString:
		kind = typeString
	case hasFloat:
		kind = typeDouble
	case hasInt:
		kind = typeBigint
	}
	nulls := make([]byte, (len(vals)+7)/8)
	items := make([]any, len(vals))
	for i, v := range vals {
		if v == nil {
			nulls[i/8] |= 1 << (i % 8)
		}
		switch kind {
		case typeString:
			switch x := v.(type) {
			case []byte:
				items[i] = string(x)
			case nil:
				items[i] = ""
			default:
				items[i] = fmt.Sprint(x)
			}
		case typeDouble:
			switch x := v.(type) {
			case int64:
				items[i] = float64(x)
			case float64:
				items[i] = x
			default:
				items[i] = float64(0)
			}
		case typeBigint:
			x, _ := v.(int64)
			items[i] = x
		}
	}
	field, elem := int16(7), thrift.TType(thrift.STRING)
	switch kind {
	case typeDouble:
		field, elem = 6, thrift.DOUBLE
	case typeBigint:
		field, elem = 5, thrift.I64
	}
	return kind, W{{field, thrift.STRUCT, W{{1, thrift.LIST, L{elem, items}}, {2, thrift.STRING, nulls}}}}
}

// run executes the statement on SQLite with the parameters converted from
// their Spark types, and returns the columns.
func (w *Warehouse) run(ctx context.Context, st Statement) ([]string, [][]any, error) {
	args := make([]any, len(st.Params))
	for i, p := range st.Params {
		if p.Value == nil {
			continue
		}
		switch p.Type {
		case "TINYINT", "SMALLINT", "INT", "INTEGER", "BIGINT":
			n, err := strconv.ParseInt(*p.Value, 10, 64)
			if err != nil {
				return nil, nil, &SparkError{Class: "INVALID_PARAMETER_VALUE", State: "22023", Msg: fmt.Sprintf("parameter %d %q is not a %s", i+1, *p.Value, p.Type)}
			}
			args[i] = n
		case "FLOAT", "DOUBLE":
			f, err := strconv.ParseFloat(*p.Value, 64)
			if err != nil {
				return nil, nil, &SparkError{Class: "INVALID_PARAMETER_VALUE", State: "22023", Msg: fmt.Sprintf("parameter %d %q is not a %s", i+1, *p.Value, p.Type)}
			}
			args[i] = f
		default:
			args[i] = *p.Value
		}
	}
	rows, err := w.db.QueryContext(ctx, st.SQL, args...)
	if err != nil {
		return nil, nil, &SparkError{Class: "TABLE_OR_VIEW_NOT_FOUND", State: "42P01", Msg: err.Error()}
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return nil, nil, err
	}
	cols := make([][]any, len(names))
	vals := make([]any, len(names))
	ptrs := make([]any, len(names))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return nil, nil, err
		}
		for i, v := range vals {
			cols[i] = append(cols[i], v)
		}
	}
	return names, cols, rows.Err()
}

// SparkError is an error as a warehouse reports it.
type SparkError struct{ Class, State, Msg string }

func (e *SparkError) Error() string {
	return "[" + e.Class + "] " + e.Msg + " SQLSTATE: " + e.State
}

var (
	limitRE = regexp.MustCompile(`(?i)\b(LIMIT|OFFSET)\s+`)
	castRE  = regexp.MustCompile(`(?i)^CAST\(\s*\?\s+AS\s+INT\s*\)`)
	litRE   = regexp.MustCompile(`^[0-9]+\b`)
	tsRE    = regexp.MustCompile(`(?i)timestamp_micros\(\s*\?\s*\)`)
)

var integral = map[string]bool{"TINYINT": true, "SMALLINT": true, "INT": true, "INTEGER": true, "BIGINT": true}
var intType = map[string]bool{"TINYINT": true, "SMALLINT": true, "INT": true, "INTEGER": true}

// checkSpark applies the rules of Spark SQL that the dashboard's statements
// meet or break: every marker bound, LIMIT/OFFSET an INT expression that folds
// to a non-negative value, timestamp_micros given an integral type.
func checkSpark(stmt string, params []Param) error {
	// positions of the ? markers (the dashboard's statements hold no string literals)
	var marks []int
	for i, c := range stmt {
		if c == '?' {
			marks = append(marks, i)
		}
	}
	if len(marks) != len(params) {
		return &SparkError{Class: "UNBOUND_SQL_PARAMETER", State: "42P02",
			Msg: fmt.Sprintf("the statement has %d parameter markers but %d parameters were bound.", len(marks), len(params))}
	}
	index := func(pos int) int {
		for i, m := range marks {
			if m == pos {
				return i
			}
		}
		return -1
	}
	for _, m := range limitRE.FindAllStringSubmatchIndex(stmt, -1) {
		kw := strings.ToUpper(stmt[m[2]:m[3]])
		rest := stmt[m[1]:]
		var val int64
		switch {
		case strings.HasPrefix(rest, "?"):
			p := params[index(m[1])]
			if !intType[p.Type] {
				return &SparkError{Class: "INVALID_LIMIT_LIKE_EXPRESSION.DATA_TYPE", State: "42K0E",
					Msg: fmt.Sprintf(`The %s like expression "?" is invalid. The %s expression must be integer type, but got "%s".`, strings.ToLower(kw), strings.ToLower(kw), p.Type)}
			}
			if p.Value == nil {
				return &SparkError{Class: "INVALID_LIMIT_LIKE_EXPRESSION.IS_NULL", State: "42K0E", Msg: "The limit like expression is null."}
			}
			val, _ = strconv.ParseInt(*p.Value, 10, 64)
		case castRE.MatchString(rest):
			p := params[index(m[1]+strings.Index(rest, "?"))]
			if p.Value == nil {
				return &SparkError{Class: "INVALID_LIMIT_LIKE_EXPRESSION.IS_NULL", State: "42K0E", Msg: "The limit like expression is null."}
			}
			var err error
			val, err = strconv.ParseInt(*p.Value, 10, 64)
			if err != nil || !integral[p.Type] || val != int64(int32(val)) {
				// CAST to INT of a value out of range fails under ANSI mode (the SQL warehouse default)
				return &SparkError{Class: "CAST_OVERFLOW", State: "22003", Msg: fmt.Sprintf("The value %v of the type %q cannot be cast to \"INT\" due to an overflow.", p.Value, p.Type)}
			}
		case litRE.MatchString(rest):
			var err error
			val, err = strconv.ParseInt(litRE.FindString(rest), 10, 32)
			if err != nil {
				return &SparkError{Class: "INVALID_LIMIT_LIKE_EXPRESSION.DATA_TYPE", State: "42K0E", Msg: "the literal is not an INT"}
			}
		default:
			return fmt.Errorf("dbsqltest: the %s expression in %q is beyond what this stand-in checks", kw, stmt)
		}
		if val < 0 {
			return &SparkError{Class: "INVALID_LIMIT_LIKE_EXPRESSION.IS_NEGATIVE", State: "42K0E", Msg: fmt.Sprintf("The %s like expression must be >= 0, but got %d.", strings.ToLower(kw), val)}
		}
	}
	for _, m := range tsRE.FindAllStringIndex(stmt, -1) {
		p := params[index(m[0]+strings.Index(stmt[m[0]:m[1]], "?"))]
		if !integral[p.Type] {
			return &SparkError{Class: "DATATYPE_MISMATCH.UNEXPECTED_INPUT_TYPE", State: "42K09",
				Msg: fmt.Sprintf(`Cannot resolve "timestamp_micros(?)": the parameter requires the "INTEGRAL" type, however "?" has the type "%s".`, p.Type)}
		}
	}
	return nil
}
