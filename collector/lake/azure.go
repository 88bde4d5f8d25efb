package lake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"

	"github.com/pilake/pilake/internal/backoff"
)

// AzureOptions configure an Azure Blob / ADLS Gen2 lake. Exactly one way to
// authenticate is used: ConnectionString, or Account + Key, or Account (or
// Endpoint) + SAS.
type AzureOptions struct {
	// ConnectionString is an Azure Storage connection string
	// ("DefaultEndpointsProtocol=...;AccountName=...;AccountKey=...;BlobEndpoint=...").
	ConnectionString string
	// Account is the storage account name; with Key (shared key) or SAS.
	Account string
	// Key is the account's base64 shared key.
	Key string
	// SAS is a shared access signature query string ("sv=...&sig=..."), with or without the leading '?'.
	SAS string
	// Endpoint is the Blob service URL; default https://{Account}.blob.core.windows.net.
	// ADLS Gen2 accounts accept the Blob API on this endpoint.
	Endpoint string
	// Container holds the lake. It is created if missing (when the credential may).
	Container string
	// Prefix, if not empty, is prepended (with a '/') to every object name, so
	// several lakes can share a container.
	Prefix string
	// Retry controls retries of transient failures (5xx, 408, 429, timeouts,
	// connection errors). The zero value retries until the context ends.
	Retry RetryPolicy
	// OnRetry, if set, is called for each failed attempt that will be retried
	// (for logging and the lake-errors metric).
	OnRetry func(op, name string, attempt int, err error)
	// Transport replaces the HTTP client (tests inject faults with it).
	Transport policy.Transporter
}

// RetryPolicy is exponential backoff with full jitter.
type RetryPolicy struct {
	// MaxAttempts bounds the attempts per operation; 0 means no bound: retry
	// until the context ends (back-pressure during an outage).
	MaxAttempts int
	// BaseDelay is the first backoff (default 100 ms); it doubles up to MaxDelay (default 5 s).
	BaseDelay, MaxDelay time.Duration
	// TryTimeout bounds one attempt (default 30 s); a timed-out attempt is retried.
	TryTimeout time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.BaseDelay <= 0 {
		p.BaseDelay = 100 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 5 * time.Second
	}
	if p.TryTimeout <= 0 {
		p.TryTimeout = 30 * time.Second
	}
	return p
}

// Azure is a Lake in an Azure Blob container (or an ADLS Gen2 filesystem
// through its Blob endpoint, or Azurite). Put and PutIfAbsent are single
// Put Blob requests, so an object appears whole or not at all; PutIfAbsent
// sends If-None-Match: *.
type Azure struct {
	c      *container.Client
	prefix string
	retry  RetryPolicy
	onErr  func(op, name string, attempt int, err error)
}

var _ Lake = (*Azure)(nil)

// NewAzure connects to the container described by opts and creates it if it
// does not exist.
func NewAzure(ctx context.Context, opts AzureOptions) (*Azure, error) {
	if opts.Container == "" {
		return nil, errors.New("azure lake: no container specified")
	}
	co := &container.ClientOptions{}
	// Retries are done here, not by the SDK, so that a PutIfAbsent can tell
	// "my earlier attempt succeeded" from "someone else wrote it".
	co.Retry = policy.RetryOptions{MaxRetries: -1}
	if opts.Transport != nil {
		co.Transport = opts.Transport
	}
	endpoint := strings.TrimSuffix(opts.Endpoint, "/")
	if endpoint == "" && opts.Account != "" {
		endpoint = "https://" + opts.Account + ".blob.core.windows.net"
	}
	var (
		c   *container.Client
		err error
	)
	switch {
	case opts.ConnectionString != "":
		c, err = container.NewClientFromConnectionString(opts.ConnectionString, opts.Container, co)
	case opts.Key != "":
		if opts.Account == "" {
			return nil, errors.New("azure lake: a key needs an account name")
		}
		cred, cerr := container.NewSharedKeyCredential(opts.Account, opts.Key)
		if cerr != nil {
			return nil, fmt.Errorf("azure lake: shared key: %w", cerr)
		}
		c, err = container.NewClientWithSharedKeyCredential(endpoint+"/"+opts.Container, cred, co)
	case opts.SAS != "":
		if endpoint == "" {
			return nil, errors.New("azure lake: a SAS needs an account name or an endpoint")
		}
		c, err = container.NewClientWithNoCredential(endpoint+"/"+opts.Container+"?"+strings.TrimPrefix(opts.SAS, "?"), co)
	default:
		return nil, errors.New("azure lake: no credentials: give a connection string, account + key, or a SAS")
	}
	if err != nil {
		return nil, fmt.Errorf("azure lake: creating client: %w", err)
	}
	prefix := strings.Trim(opts.Prefix, "/")
	if prefix != "" {
		if err := CheckName(prefix); err != nil {
			return nil, fmt.Errorf("azure lake: prefix: %w", err)
		}
		prefix += "/"
	}
	a := &Azure{c: c, prefix: prefix, retry: opts.Retry.withDefaults(), onErr: opts.OnRetry}
	err = a.do(ctx, "create container", opts.Container, func(ctx context.Context) error {
		_, err := c.Create(ctx, nil)
		if bloberror.HasCode(err, bloberror.ContainerAlreadyExists) ||
			bloberror.HasCode(err, bloberror.AuthorizationPermissionMismatch, bloberror.AuthorizationFailure) {
			// Exists, or a SAS that may not create containers: later calls tell.
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("azure lake: creating container %s: %w", opts.Container, err)
	}
	return a, nil
}

// transient reports whether err is worth retrying: server errors, throttling,
// timeouts and transport failures. Client errors (4xx) are final.
func transient(err error) bool {
	var re *azcore.ResponseError
	if errors.As(err, &re) {
		s := re.StatusCode
		return s >= 500 || s == http.StatusRequestTimeout || s == http.StatusTooManyRequests
	}
	return true
}

// do runs op with retries; an attempt is bounded by TryTimeout.
func (a *Azure) do(ctx context.Context, what, name string, op func(ctx context.Context) error) error {
	var err error
	b := backoff.Backoff{Min: a.retry.BaseDelay, Max: a.retry.MaxDelay, Jitter: true}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, a.retry.TryTimeout)
		err = op(actx)
		cancel()
		if err == nil || !transient(err) {
			return err
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		if a.retry.MaxAttempts > 0 && attempt >= a.retry.MaxAttempts {
			return fmt.Errorf("giving up after %d attempts: %w", attempt, err)
		}
		if a.onErr != nil {
			a.onErr(what, name, attempt, err)
		}
		if backoff.Wait(ctx, b.Next()) != nil {
			return errors.Join(ctx.Err(), err)
		}
	}
}

func (a *Azure) blobName(name string) (string, error) {
	if err := CheckName(name); err != nil {
		return "", err
	}
	return a.prefix + name, nil
}

// Put implements Lake.
func (a *Azure) Put(ctx context.Context, name string, data []byte) error {
	bn, err := a.blobName(name)
	if err != nil {
		return err
	}
	bb := a.c.NewBlockBlobClient(bn)
	err = a.do(ctx, "put", name, func(ctx context.Context) error {
		_, err := bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(data)), nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

// PutIfAbsent implements Lake. If an attempt failed in a way that may have
// written the blob (a timeout or a lost response) and a retry then finds the
// blob existing with exactly data as content, the earlier attempt is taken to
// have succeeded and nil is returned.
func (a *Azure) PutIfAbsent(ctx context.Context, name string, data []byte) error {
	bn, err := a.blobName(name)
	if err != nil {
		return err
	}
	bb := a.c.NewBlockBlobClient(bn)
	ambiguous := false
	opts := &blockblob.UploadOptions{AccessConditions: &blob.AccessConditions{
		ModifiedAccessConditions: &blob.ModifiedAccessConditions{IfNoneMatch: to(azcore.ETagAny)},
	}}
	err = a.do(ctx, "put-if-absent", name, func(ctx context.Context) error {
		_, err := bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(data)), opts)
		if err != nil && transient(err) {
			ambiguous = true
		}
		return err
	})
	if bloberror.HasCode(err, bloberror.BlobAlreadyExists) || isStatus(err, http.StatusConflict, http.StatusPreconditionFailed) {
		if ambiguous {
			if got, gerr := a.Get(ctx, name); gerr == nil && bytes.Equal(got, data) {
				return nil
			}
		}
		return fmt.Errorf("writing %s: %w", name, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return nil
}

func isStatus(err error, codes ...int) bool {
	var re *azcore.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	for _, c := range codes {
		if re.StatusCode == c {
			return true
		}
	}
	return false
}

// Get implements Lake.
func (a *Azure) Get(ctx context.Context, name string) ([]byte, error) {
	bn, err := a.blobName(name)
	if err != nil {
		return nil, err
	}
	bc := a.c.NewBlobClient(bn)
	var out []byte
	err = a.do(ctx, "get", name, func(ctx context.Context) error {
		resp, err := bc.DownloadStream(ctx, nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		out, err = io.ReadAll(resp.Body)
		return err
	})
	if bloberror.HasCode(err, bloberror.BlobNotFound) || isStatus(err, http.StatusNotFound) {
		return nil, fmt.Errorf("reading %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	return out, nil
}

// List implements Lake. Blob listings are in name order already.
func (a *Azure) List(ctx context.Context, prefix string) ([]Object, error) {
	full := a.prefix + prefix
	var out []Object
	var marker *string
	for {
		var page container.ListBlobsFlatResponse
		err := a.do(ctx, "list", prefix, func(ctx context.Context) error {
			pager := a.c.NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &full, Marker: marker})
			var err error
			page, err = pager.NextPage(ctx)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", prefix, err)
		}
		for _, it := range page.Segment.BlobItems {
			if it.Name == nil {
				continue
			}
			o := Object{Name: strings.TrimPrefix(*it.Name, a.prefix)}
			if p := it.Properties; p != nil {
				if p.ContentLength != nil {
					o.Size = *p.ContentLength
				}
				if p.LastModified != nil {
					o.ModTime = *p.LastModified
				}
			}
			out = append(out, o)
		}
		if page.NextMarker == nil || *page.NextMarker == "" {
			break
		}
		marker = page.NextMarker
	}
	return out, nil
}

// Delete implements Lake.
func (a *Azure) Delete(ctx context.Context, name string) error {
	bn, err := a.blobName(name)
	if err != nil {
		return err
	}
	bc := a.c.NewBlobClient(bn)
	err = a.do(ctx, "delete", name, func(ctx context.Context) error {
		_, err := bc.Delete(ctx, nil)
		if bloberror.HasCode(err, bloberror.BlobNotFound) || isStatus(err, http.StatusNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting %s: %w", name, err)
	}
	return nil
}

func to[T any](v T) *T { return &v }
