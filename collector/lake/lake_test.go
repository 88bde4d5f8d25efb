package lake_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/sas"

	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/scripts/testenv"
)

// conformance checks the Lake contract on l.
func conformance(t *testing.T, l lake.Lake) {
	ctx := t.Context()
	t.Run("put get overwrite", func(t *testing.T) {
		if err := l.Put(ctx, "a/b/one.txt", []byte("1")); err != nil {
			t.Fatal(err)
		}
		if err := l.Put(ctx, "a/b/one.txt", []byte("2")); err != nil {
			t.Fatal(err)
		}
		got, err := l.Get(ctx, "a/b/one.txt")
		if err != nil || string(got) != "2" {
			t.Fatalf("Get = %q, %v; want 2", got, err)
		}
	})
	t.Run("put if absent", func(t *testing.T) {
		if err := l.PutIfAbsent(ctx, "pia/x.json", []byte("first")); err != nil {
			t.Fatal(err)
		}
		err := l.PutIfAbsent(ctx, "pia/x.json", []byte("second"))
		if !errors.Is(err, lake.ErrExists) {
			t.Fatalf("second PutIfAbsent = %v, want ErrExists", err)
		}
		got, _ := l.Get(ctx, "pia/x.json")
		if string(got) != "first" {
			t.Fatalf("content %q after losing PutIfAbsent, want first", got)
		}
	})
	t.Run("concurrent put if absent has one winner", func(t *testing.T) {
		var wins, exists atomic.Int32
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := l.PutIfAbsent(ctx, "race/commit.json", []byte(fmt.Sprint(i)))
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, lake.ErrExists):
					exists.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 || exists.Load() != 7 {
			t.Fatalf("wins=%d exists=%d, want 1 and 7", wins.Load(), exists.Load())
		}
	})
	t.Run("get missing", func(t *testing.T) {
		_, err := l.Get(ctx, "nope/none")
		if !errors.Is(err, lake.ErrNotFound) {
			t.Fatalf("Get missing = %v, want ErrNotFound", err)
		}
	})
	t.Run("list sorted by prefix", func(t *testing.T) {
		for _, n := range []string{"ls/b/2", "ls/a/1", "ls/c", "lsx/no", "ls/a/0"} {
			if err := l.Put(ctx, n, []byte(n)); err != nil {
				t.Fatal(err)
			}
		}
		objs, err := l.List(ctx, "ls/")
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range objs {
			names = append(names, o.Name)
			if o.Size != int64(len(o.Name)) {
				t.Errorf("%s: size %d, want %d", o.Name, o.Size, len(o.Name))
			}
		}
		if got, want := strings.Join(names, ","), "ls/a/0,ls/a/1,ls/b/2,ls/c"; got != want {
			t.Fatalf("List = %s, want %s", got, want)
		}
		objs, err = l.List(ctx, "ls/a/")
		if err != nil || len(objs) != 2 {
			t.Fatalf("List ls/a/ = %v, %v; want 2 objects", objs, err)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := l.Put(ctx, "del/x", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := l.Delete(ctx, "del/x"); err != nil {
			t.Fatal(err)
		}
		if err := l.Delete(ctx, "del/x"); err != nil {
			t.Fatalf("deleting a missing object: %v", err)
		}
		if _, err := l.Get(ctx, "del/x"); !errors.Is(err, lake.ErrNotFound) {
			t.Fatalf("Get after Delete = %v", err)
		}
	})
	t.Run("bad names", func(t *testing.T) {
		for _, n := range []string{"", "/abs", "a/../b", "a//b", "./a", "a\\b"} {
			if err := l.Put(ctx, n, nil); !errors.Is(err, lake.ErrBadName) {
				t.Errorf("Put(%q) = %v, want ErrBadName", n, err)
			}
		}
	})
}

func TestMemory(t *testing.T) { conformance(t, lake.NewMemory()) }

func TestLocal(t *testing.T) {
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conformance(t, l)
}

var containerSeq atomic.Int32

func newAzurite(t *testing.T, mod func(*lake.AzureOptions)) *lake.Azure {
	t.Helper()
	az := testenv.AzuriteBlob(t)
	opts := lake.AzureOptions{
		ConnectionString: az.ConnectionString(),
		Container:        fmt.Sprintf("lake-%d-%d", containerSeq.Add(1), rand.Uint32()),
		Prefix:           "pilake",
	}
	if mod != nil {
		mod(&opts)
	}
	l, err := lake.NewAzure(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAzure(t *testing.T) {
	t.Run("connection string", func(t *testing.T) { conformance(t, newAzurite(t, nil)) })
	t.Run("sas", func(t *testing.T) {
		az := testenv.AzuriteBlob(t)
		name := fmt.Sprintf("lake-sas-%d", rand.Uint32())
		// Create the container and a container SAS with the account key, as an
		// operator would, then use only the SAS.
		newAzurite(t, func(o *lake.AzureOptions) { o.Container = name })
		cred, err := container.NewSharedKeyCredential(az.Account, az.Key)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := container.NewClientWithSharedKeyCredential(az.Endpoint+"/"+name, cred, nil)
		if err != nil {
			t.Fatal(err)
		}
		sasURL, err := cc.GetSASURL(sas.ContainerPermissions{Read: true, Add: true, Create: true, Write: true, Delete: true, List: true},
			time.Now().Add(time.Hour), nil)
		if err != nil {
			t.Fatal(err)
		}
		_, query, _ := strings.Cut(sasURL, "?")
		l, err := lake.NewAzure(t.Context(), lake.AzureOptions{SAS: query, Endpoint: az.Endpoint, Container: name, Prefix: "p"})
		if err != nil {
			t.Fatal(err)
		}
		conformance(t, l)
	})
	t.Run("account and key", func(t *testing.T) {
		az := testenv.AzuriteBlob(t)
		conformance(t, newAzurite(t, func(o *lake.AzureOptions) {
			o.ConnectionString, o.Account, o.Key, o.Endpoint = "", az.Account, az.Key, az.Endpoint
		}))
	})
}

// flaky fails requests in front of the real Azurite transport: the first
// failBefore requests get a 503 without reaching Azurite; with loseResponse,
// the next request reaches Azurite but its response is replaced by an error
// (the "did my write happen?" case).
type flaky struct {
	mu           sync.Mutex
	failBefore   int
	loseResponse bool
	failed       int
}

func (f *flaky) Do(req *http.Request) (*http.Response, error) {
	f.mu.Lock()
	fail := f.failBefore > 0
	if fail {
		f.failBefore--
		f.failed++
	}
	lose := !fail && f.loseResponse
	if lose {
		f.loseResponse = false
	}
	f.mu.Unlock()
	if fail {
		return &http.Response{StatusCode: 503, Status: "503 Server Busy", Header: http.Header{},
			Body: http.NoBody, Request: req}, nil
	}
	resp, err := http.DefaultClient.Do(req)
	if lose && err == nil {
		resp.Body.Close()
		return nil, errors.New("injected: connection reset after the request was sent")
	}
	return resp, err
}

func TestAzureRetries(t *testing.T) {
	f := &flaky{}
	var retries atomic.Int32
	l := newAzurite(t, func(o *lake.AzureOptions) {
		o.Transport = f
		o.Retry = lake.RetryPolicy{BaseDelay: 1, MaxDelay: 2}
		o.OnRetry = func(op, name string, attempt int, err error) { retries.Add(1) }
	})
	ctx := t.Context()

	f.mu.Lock()
	f.failBefore = 5
	f.mu.Unlock()
	if err := l.Put(ctx, "r/put", []byte("v")); err != nil {
		t.Fatalf("Put through 5 server errors: %v", err)
	}
	if got, err := l.Get(ctx, "r/put"); err != nil || string(got) != "v" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	if retries.Load() != 5 {
		t.Fatalf("OnRetry called %d times, want 5", retries.Load())
	}

	// Lost response: the blob was written by the first attempt; the retry sees
	// 409 with our own content, which is success.
	f.mu.Lock()
	f.loseResponse = true
	f.mu.Unlock()
	if err := l.PutIfAbsent(ctx, "r/pia", []byte("mine")); err != nil {
		t.Fatalf("PutIfAbsent with a lost response: %v", err)
	}
	// A real conflict is still ErrExists, even after an ambiguous attempt.
	f.mu.Lock()
	f.loseResponse = true
	f.mu.Unlock()
	if err := l.PutIfAbsent(ctx, "r/pia", []byte("other")); !errors.Is(err, lake.ErrExists) {
		t.Fatalf("conflicting PutIfAbsent = %v, want ErrExists", err)
	}

	// Bounded attempts give up with the last error.
	bounded := newAzurite(t, func(o *lake.AzureOptions) {
		o.Transport = f
		o.Retry = lake.RetryPolicy{MaxAttempts: 3, BaseDelay: 1, MaxDelay: 2}
	})
	f.mu.Lock()
	f.failBefore = 10
	f.mu.Unlock()
	if err := bounded.Put(ctx, "r/never", []byte("v")); err == nil || errors.Is(err, lake.ErrExists) {
		t.Fatalf("Put through 10 failures with 3 attempts = %v, want an error", err)
	}

	// Unbounded retries end with the context (back-pressure, not data loss).
	f.mu.Lock()
	f.failBefore = 1 << 30
	f.mu.Unlock()
	cctx, cancel := context.WithCancel(ctx)
	go func() {
		for retries.Load() < 10 {
			// wait on the retry counter, not a timer
			runtime.Gosched()
		}
		cancel()
	}()
	err := l.Put(cctx, "r/outage", []byte("v"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Put during an outage after cancel = %v, want context.Canceled", err)
	}
	f.mu.Lock()
	f.failBefore = 0
	f.mu.Unlock()
	if _, err := l.Get(ctx, "r/outage"); !errors.Is(err, lake.ErrNotFound) {
		t.Fatalf("outage write visible: %v", err)
	}
}

func TestLocalGroupWriter(t *testing.T) {
	l, err := lake.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	var gw lake.GroupWriter = l
	if err := gw.WriteIfAbsent(ctx, "landing/d/1.bin", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := gw.WriteIfAbsent(ctx, "landing/d/1.bin", []byte("two")); !errors.Is(err, lake.ErrExists) {
		t.Fatalf("second WriteIfAbsent = %v, want ErrExists", err)
	}
	if err := l.PutIfAbsent(ctx, "landing/d/1.bin", []byte("three")); !errors.Is(err, lake.ErrExists) {
		t.Fatalf("PutIfAbsent over WriteIfAbsent = %v, want ErrExists", err)
	}
	if err := gw.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := l.Get(ctx, "landing/d/1.bin")
	if err != nil || string(got) != "one" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	objs, err := l.List(ctx, "landing/")
	if err != nil || len(objs) != 1 {
		t.Fatalf("List = %v, %v; want one object and no temporary files", objs, err)
	}
}
