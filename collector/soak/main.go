// Command soak drives the collector's real landing (landing.Lander) and
// stages (stages.Pipeline) on a local lake with an injected clock through
// simulated days, and prints per simulated day what the lake and the
// process hold: files and bytes per table, _delta_log and checkpoint bytes,
// tombstones, landing objects, stage state bytes, heap, CPU per epoch and
// delta.Load time. It ends with soak_growth_ratio (the largest
// day-last/day-8 ratio of those figures), soak_heap_mib_max and
// soak_epoch_cpu_ratio (CPU per epoch, last day / day 1).
//
// Time is compressed: every epoch (one Delta commit per table, default
// 5 simulated minutes instead of the collector's 2 s) carries an epoch's
// worth of readings, landed at the end of that epoch. So a simulated day
// has 288 commits per table instead of 43,200; the per-commit costs scale
// by that factor (collector/README.md has the production budget).
// Devices reboot every day (a new boot: a new stream), and -churn of them
// are replaced each day by new device ids, so state that never forgets
// grows here.
//
//	go run ./collector/soak -days 30 -devices 100 -rate 1
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pilake/pilake/agent/wire"
	"github.com/pilake/pilake/collector/delta"
	"github.com/pilake/pilake/collector/lake"
	"github.com/pilake/pilake/collector/landing"
	"github.com/pilake/pilake/collector/rollup"
	"github.com/pilake/pilake/collector/schema"
	"github.com/pilake/pilake/collector/stages"
	"github.com/pilake/pilake/internal/clock"
	"github.com/pilake/pilake/internal/gctune"
)

type config struct {
	days    int
	devices int
	rate    int
	epoch   time.Duration
	batch   time.Duration
	churn   float64
	dir     string
	keep    bool
	verbose bool
	profile string // CPU profile of each day, to this prefix
	memprof string // heap profile at each day's end, to this prefix
	policy  string // checkpoint policy of the tables
	rollups bool   // maintain the rollup tiers, as the collector does by default
}

func main() {
	// The collector's GC settings (GOGC=400, a 448 MiB memory limit), so
	// the heap and CPU measured are the collector's.
	gctune.Apply()
	var c config
	flag.IntVar(&c.days, "days", 30, "simulated days")
	flag.IntVar(&c.devices, "devices", 100, "devices")
	flag.IntVar(&c.rate, "rate", 1, "readings per second per device")
	flag.DurationVar(&c.epoch, "epoch", 5*time.Minute, "simulated time per epoch (one commit per table)")
	flag.DurationVar(&c.batch, "batch", time.Minute, "simulated time per batch")
	flag.Float64Var(&c.churn, "churn", 0.05, "fraction of devices replaced by new ones each day")
	flag.StringVar(&c.dir, "dir", "", "lake directory (default: a new one under /dev/shm or the temp dir, removed at the end)")
	flag.BoolVar(&c.keep, "keep", false, "keep the lake")
	flag.BoolVar(&c.verbose, "v", false, "log the stages' info messages")
	flag.StringVar(&c.profile, "cpuprofile", "", "write each day's CPU profile to this prefix + day number")
	flag.StringVar(&c.memprof, "memprofile", "", "write a heap profile at each day's end (after a GC) to this prefix + day number")
	flag.BoolVar(&c.rollups, "rollups", true, "maintain silver's rollup tiers (collector/rollup) after each epoch, as the collector does by default")
	flag.StringVar(&c.policy, "checkpoint-policy", "v2", "checkpoint policy of the tables: v2 or classic")
	flag.Parse()
	if c.memprof != "" {
		runtime.MemProfileRate = 16 << 10 // finer than the default 512 KiB: the live heap is a few MiB
	}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

type day struct {
	n          int
	files      map[string]int64 // table → live+garbage data files on disk
	bytes      map[string]int64
	logBytes   map[string]int64
	cpBytes    map[string]int64 // checkpoint files and sidecars on disk
	cpWritten  map[string]int64 // checkpoint files and sidecars written during the day
	cpState    map[string]int64 // the newest checkpoint and the sidecars it references
	tombstones map[string]int64
	liveFiles  map[string]int64
	liveBytes  map[string]int64 // sizes of the live files (the snapshot's)
	loadMS     map[string]float64
	landing    int64
	state      int64
	heapMiB    float64 // peak heap objects during the day
	heapMed    float64 // median of the day's heap samples (one at each epoch's end)
	liveMiB    float64 // heap after a GC at the day's end
	cpuMS      float64 // CPU per epoch
}

func run(ctx context.Context, c config) error {
	if c.epoch%c.batch != 0 || c.batch < time.Second || (24*time.Hour)%c.epoch != 0 {
		return errors.New("-epoch must be a multiple of -batch (≥ 1s) and divide a day")
	}
	dir := c.dir
	if dir == "" {
		base := os.TempDir()
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			base = "/dev/shm"
		}
		d, err := os.MkdirTemp(base, "pilake-soak-")
		if err != nil {
			return err
		}
		dir = d
		if !c.keep {
			defer os.RemoveAll(dir)
		}
	}
	local, err := lake.NewLocal(dir)
	if err != nil {
		return err
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start) // simulated time, moved one epoch at a time
	lk := &simLake{Local: local, marks: []mark{{real: time.Now(), sim: start}}}
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	perBatch := int(c.batch/time.Second) * c.rate
	perEpoch := c.devices * int(c.epoch/time.Second) * c.rate
	instance := landing.NewInstance()
	so := stages.Options{
		Clock: clk, Logger: log, MaxEpochRows: perEpoch,
		CommitInterval: 1000 * time.Hour, // epochs are cut by MaxEpochRows: one per simulated epoch
		ScanInterval:   -1, SkipShutdownScan: true, LocalInstance: instance,
		Release: landing.ReleaseBatch, CheckpointPolicy: c.policy,
		UpkeepLock: new(sync.Mutex), // as the collector: compaction and the rollups take turns
	}
	p, err := stages.New(lk, so)
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(runCtx) }()
	select {
	case <-p.Ready():
	case err := <-runErr:
		return err
	}
	lander, err := landing.New(landing.Options{Lake: lk, Logger: log, Clock: clk, Instance: instance,
		Submit: p.Submit})
	if err != nil {
		return err
	}

	var roller *rollup.Roller
	if c.rollups {
		roller = rollup.New(lk, rollup.Options{Logger: log, Now: clk.Now, Table: so.TableOptions(), UpkeepLock: so.UpkeepLock})
		tables = append(tables, schema.Silver10s, schema.Silver1m, schema.Silver1h)
	}
	type device struct {
		id   string
		boot uint64
		seq  uint64
	}
	devs := make([]device, c.devices)
	gen := make([]int, c.devices)
	for i := range devs {
		devs[i] = device{id: fmt.Sprintf("soak-%04d-g0", i), boot: bootID(fmt.Sprintf("soak-%04d-g0", i), 0)}
	}
	epochsPerDay := int((24 * time.Hour) / c.epoch)
	gogc := debug.SetGCPercent(-1)
	debug.SetGCPercent(gogc)
	fmt.Printf("# soak: %d days, %d devices × %d Hz, epoch %v (%d/day), batch %v, churn %.0f%%/day, %s checkpoints, GOGC=%d, memory limit %d MiB, lake %s\n",
		c.days, c.devices, c.rate, c.epoch, epochsPerDay, c.batch, c.churn*100, c.policy, gogc, debug.SetMemoryLimit(-1)>>20, dir)

	var days []day
	heapPeak := 0.0
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	epoch := 0
	seen := map[string]bool{} // checkpoint objects measured on earlier days
	for d := 1; d <= c.days; d++ {
		// Every day each device reboots; churn replaces some by new ids.
		replace := int(math.Round(c.churn * float64(c.devices)))
		for i := range devs {
			devs[i].boot = bootID(devs[i].id, d)
			devs[i].seq = 0
			if i < replace {
				slot := (d*replace + i) % c.devices
				gen[slot]++
				id := fmt.Sprintf("soak-%04d-g%d", slot, gen[slot])
				devs[slot] = device{id: id, boot: bootID(id, d)}
			}
		}
		if c.profile != "" {
			f, err := os.Create(fmt.Sprintf("%s%d", c.profile, d))
			if err != nil {
				return err
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				return err
			}
		}
		cpu0 := cpuTime()
		dayPeak := 0.0
		var heaps []float64
		for e := 0; e < epochsPerDay; e++ {
			t0 := start.Add(time.Duration(epoch) * c.epoch)
			clk.Advance(t0.Add(c.epoch).Sub(clk.Now()))
			lk.mark(t0.Add(c.epoch))
			var wg sync.WaitGroup
			var landErr atomic.Value
			for i := range devs {
				dv := &devs[i]
				wg.Add(1)
				go func() {
					defer wg.Done()
					var buf []byte
					enc := wire.NewEncoder(wire.Binary)
					for bt := t0; bt.Before(t0.Add(c.epoch)); bt = bt.Add(c.batch) {
						dv.seq++
						b := &wire.Batch{DeviceID: dv.id, BootID: dv.boot, Seq: dv.seq, IntervalUS: uint32(1e6 / c.rate)}
						b.Readings = make([]wire.Reading, perBatch)
						for k := range b.Readings {
							us := bt.UnixMicro() + int64(k)*int64(1e6/c.rate)
							b.Readings[k] = wire.Reading{TimeUS: us, Temp: 2000 + int32(us/1e6%500), Press: 101325 * 256, Hum: 40 * 1024, Fresh: true}
						}
						var err error
						if buf, err = enc.Append(buf[:0], b); err != nil {
							landErr.Store(err)
							return
						}
						out, err := lander.Land(ctx, landing.Message{Data: buf, Source: "mqtt", Device: dv.id})
						if err == nil && out != landing.OutcomeLanded {
							err = fmt.Errorf("batch %s: %v", b.Key(), out)
						}
						if err != nil {
							landErr.Store(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			if err, ok := landErr.Load().(error); ok {
				return fmt.Errorf("landing: %w", err)
			}
			epoch++
			for p.Stats().Epochs < int64(epoch) {
				select {
				case err := <-runErr:
					return fmt.Errorf("stages stopped: %w", err)
				case <-time.After(200 * time.Microsecond):
				}
			}
			if roller != nil {
				// The collector runs these every second; once an epoch
				// is what the simulated time asks of them.
				if _, err := roller.Step(ctx); err != nil {
					return fmt.Errorf("rollup: %w", err)
				}
			}
			metrics.Read(sample)
			h := float64(sample[0].Value.Uint64()) / (1 << 20)
			heaps = append(heaps, h)
			dayPeak = max(dayPeak, h)
		}
		cpu := cpuTime() - cpu0
		// Let the committer finish the last epoch's maintenance before measuring.
		time.Sleep(300 * time.Millisecond)
		if c.profile != "" {
			pprof.StopCPUProfile()
		}
		dm, err := measure(ctx, lk, dir, d, seen)
		if err != nil {
			return err
		}
		dm.heapMiB = dayPeak
		slices.Sort(heaps)
		dm.heapMed = heaps[len(heaps)/2]
		heapPeak = max(heapPeak, dayPeak)
		// The heap a GC finds live: the least of a few GCs, so that what
		// the committer may still have in flight (the epoch's maintenance)
		// is not counted.
		dm.liveMiB = math.Inf(1)
		for range 5 {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			dm.liveMiB = min(dm.liveMiB, float64(ms.HeapAlloc)/(1<<20))
			time.Sleep(50 * time.Millisecond)
		}
		if c.memprof != "" {
			f, err := os.Create(fmt.Sprintf("%s%d", c.memprof, d))
			if err != nil {
				return err
			}
			err = pprof.WriteHeapProfile(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		}
		dm.cpuMS = float64(cpu.Microseconds()) / 1000 / float64(epochsPerDay)
		days = append(days, dm)
		// The per-table figures are needed for days 1-8 (day 8 is the
		// ratio's reference, and its bytes added look back 3 days) and the
		// last 8 days; the days between keep their scalars only, so the
		// harness's own memory does not grow in the heap it measures.
		if i := len(days) - 9; i > 7 {
			days[i].release()
		}
		printDay(dm, days)
	}
	stop()
	if err := <-runErr; err != nil {
		return fmt.Errorf("stages: %w", err)
	}
	summarize(days, heapPeak)
	return nil
}

// bootID is device id's boot id on day d: random-looking and fixed per
// (device, day), as the agent's (a random 64-bit id per start). Counting
// boots instead made bronze's boot column ever less compressible as churn
// spread the counters apart (more distinct values a file), a growth of the
// soak's data, not of the lake's upkeep.
func bootID(id string, d int) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", id, d)
	return h.Sum64()
}

// simLake is the local lake with modification times on the simulated
// clock: vacuum, log cleanup and landing expiry compare them with Now. An
// object's time is the simulated time of the epoch during which it was
// written (the embedded *lake.Local keeps its group commit).
type simLake struct {
	*lake.Local
	mu    sync.Mutex
	marks []mark // real time at which each epoch began, in order
}

type mark struct{ real, sim time.Time }

func (l *simLake) mark(sim time.Time) {
	l.mu.Lock()
	l.marks = append(l.marks, mark{real: time.Now(), sim: sim})
	// Marks older than every retention window are dropped (objects from
	// before them read as that old), so the harness's own memory does not
	// grow in the heap it measures.
	i := 0
	for i < len(l.marks)-1 && l.marks[i+1].sim.Before(sim.Add(-markHorizon)) {
		i++
	}
	l.marks = slices.Delete(l.marks, 0, i)
	l.mu.Unlock()
}

// markHorizon is how far back simLake keeps simulated times: beyond the
// longest retention (landing's 7 days).
const markHorizon = 8 * 24 * time.Hour

func (l *simLake) simTime(real time.Time) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := sort.Search(len(l.marks), func(i int) bool { return l.marks[i].real.After(real) })
	if i == 0 {
		return l.marks[0].sim
	}
	return l.marks[i-1].sim
}

func (l *simLake) List(ctx context.Context, prefix string) ([]lake.Object, error) {
	objs, err := l.Local.List(ctx, prefix)
	for i := range objs {
		objs[i].ModTime = l.simTime(objs[i].ModTime)
	}
	return objs, err
}

var tables = []string{schema.Bronze, schema.Silver, schema.SilverLate, schema.Gold}

// measure reads the lake as an operator would: object counts and sizes from
// the directory, tombstones and load time from delta.Load.
func measure(ctx context.Context, lk lake.Lake, dir string, n int, seen map[string]bool) (day, error) {
	d := day{n: n, files: map[string]int64{}, bytes: map[string]int64{}, logBytes: map[string]int64{}, cpBytes: map[string]int64{},
		tombstones: map[string]int64{}, liveFiles: map[string]int64{}, liveBytes: map[string]int64{}, loadMS: map[string]float64{},
		cpWritten: map[string]int64{}, cpState: map[string]int64{}}
	present := map[string]bool{} // checkpoint objects on disk now
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // deleted while walking
			}
			return err
		}
		if e.IsDir() {
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		top, rest, _ := strings.Cut(rel, "/")
		switch {
		case top+"/" == schema.Landing:
			d.landing++
		case top+"/" == schema.Checkpoints:
			d.state += info.Size()
		case strings.HasPrefix(rest, "_delta_log/"):
			d.logBytes[top] += info.Size()
			if strings.Contains(rest, ".checkpoint.") || strings.HasPrefix(rest, "_delta_log/_sidecars/") {
				d.cpBytes[top] += info.Size()
				present[rel] = true
				if !seen[rel] {
					seen[rel] = true
					d.cpWritten[top] += info.Size()
				}
			}
		case strings.HasSuffix(rest, ".parquet"):
			d.files[top]++
			d.bytes[top] += info.Size()
		}
		return nil
	})
	if err != nil {
		return d, err
	}
	// Checkpoint objects deleted since are forgotten (the harness's own
	// memory is in the heap it measures).
	for rel := range seen {
		if !present[rel] {
			delete(seen, rel)
		}
	}
	for _, t := range tables {
		// The fastest of five loads: the machine is shared, the figure is the load's own cost.
		var snap *delta.Snapshot
		for i := range 5 {
			t0 := time.Now()
			s, err := delta.Load(ctx, lk, t)
			if err != nil {
				return d, err
			}
			ms := float64(time.Since(t0).Microseconds()) / 1000
			if i == 0 || ms < d.loadMS[t] {
				d.loadMS[t] = ms
			}
			snap = s
		}
		d.tombstones[t] = int64(len(snap.Tombstones()))
		d.liveFiles[t] = int64(snap.NumFiles())
		for _, f := range snap.Files() {
			d.liveBytes[t] += f.Size
		}
		d.cpState[t] = snap.CheckpointBytes()
	}
	return d, nil
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func sumLoad(d day) float64 {
	var s float64
	for _, v := range d.loadMS {
		s += v
	}
	return s
}

// release drops the per-table figures (see where days are appended).
func (d *day) release() {
	d.files, d.bytes, d.logBytes, d.cpBytes, d.cpWritten, d.cpState = nil, nil, nil, nil, nil, nil
	d.tombstones, d.liveFiles, d.liveBytes, d.loadMS = nil, nil, nil, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func printDay(d day, days []day) {
	var prev day
	if len(days) > 1 {
		prev = days[len(days)-2]
	}
	var b strings.Builder
	fmt.Fprintf(&b, "day=%d", d.n)
	for _, t := range tables {
		fmt.Fprintf(&b, " %s_files=%d %s_mib=%.1f %s_live_files=%d %s_added_mib=%.2f %s_log_mib=%.2f %s_cp_mib=%.2f %s_cp_written_kib=%.0f %s_cp_state_kib=%.0f %s_tombstones=%d %s_load_ms=%.1f",
			t, d.files[t], t, mib(d.bytes[t]), t, d.liveFiles[t], t, mib(d.liveBytes[t]-prev.liveBytes[t]), t, mib(d.logBytes[t]), t, mib(d.cpBytes[t]),
			t, float64(d.cpWritten[t])/1024, t, float64(d.cpState[t])/1024, t, d.tombstones[t], t, d.loadMS[t])
	}
	fmt.Fprintf(&b, " landing_objects=%d state_kib=%.0f heap_mib=%.1f heap_median_mib=%.1f heap_live_mib=%.1f cpu_ms_per_epoch=%.2f",
		d.landing, float64(d.state)/1024, d.heapMiB, d.heapMed, d.liveMiB, d.cpuMS)
	fmt.Println(b.String())
}

// summarize prints the growth ratio: for every figure that must be flat
// once the retention windows have filled, last day / day 8 (day 8 onwards:
// the longest window, landing's 7 days, has filled). Figures that grow with
// the data itself are compared by what is not data: a table's bytes by
// their daily increase, its files by those that are not live (garbage kept
// for the retention), its checkpoints by the bytes written each day and by
// what the kept checkpoints hold beyond the newest one's state. What is
// linear in the retained history by nature (the live files, the newest
// checkpoint's state, which must list every one of them, and the time
// delta.Load takes to read that state) is printed separately, as
// "# linear" lines, not in the ratio.
func summarize(days []day, heapPeak float64) {
	last := days[len(days)-1]
	ref := days[min(7, len(days)-1)]
	type fig struct {
		name      string
		ref, last float64
	}
	var figs, linear []fig
	// Data added per day: the growth of the live files' bytes (not of the
	// bytes on disk, which vacuum's schedule moves by a day's garbage),
	// over the 3 days before (a small table's day moves by when its hour
	// files became a day file: its footers are much of its bytes). Not
	// longer: day 8's figure must not reach back before the windows had
	// filled. A device's boot that ended without a last batch (the soak's
	// devices reboot daily) is forgotten 48 h later, which closes its last
	// window: from day 4 on, each rollup tier writes those late rows every
	// day, in a file of their own (≈ 3.5 KB in silver_1h, whose day is
	// ≈ 4 KB); a week back from day 8 would count days 1-3 without them.
	added := func(ds []day, i int, t string) float64 {
		j := max(0, i-3)
		if j == i {
			return float64(ds[i].liveBytes[t])
		}
		return float64(ds[i].liveBytes[t]-ds[j].liveBytes[t]) / float64(i-j)
	}
	for _, t := range tables {
		figs = append(figs,
			// Files on disk that are not live: compacted away, kept for the retention.
			fig{t + "_garbage_files", float64(ref.files[t] - ref.liveFiles[t]), float64(last.files[t] - last.liveFiles[t])},
			fig{t + "_added_bytes", added(days, ref.n-1, t), added(days, last.n-1, t)},
			// JSON commits (and _last_checkpoint): the log without its checkpoints, which are the next figures.
			fig{t + "_json_bytes", float64(ref.logBytes[t] - ref.cpBytes[t]), float64(last.logBytes[t] - last.cpBytes[t])},
			// Checkpoint files and sidecars written during the day.
			fig{t + "_cp_written_bytes", float64(ref.cpWritten[t]), float64(last.cpWritten[t])},
			// Checkpoint bytes kept beyond the newest checkpoint's state: the
			// older checkpoints log retention keeps, and their own sidecars.
			fig{t + "_cp_kept_extra_bytes", float64(ref.cpBytes[t] - ref.cpState[t]), float64(last.cpBytes[t] - last.cpState[t])},
			fig{t + "_tombstones", float64(ref.tombstones[t]), float64(last.tombstones[t])},
		)
		linear = append(linear,
			fig{t + "_live_files", float64(ref.liveFiles[t]), float64(last.liveFiles[t])},
			fig{t + "_cp_state_bytes", float64(ref.cpState[t]), float64(last.cpState[t])},
		)
	}
	figs = append(figs,
		fig{"landing_objects", float64(ref.landing), float64(last.landing)},
		fig{"state_bytes", float64(ref.state), float64(last.state)},
		// The heap the collector keeps (after a GC at the day's end: the
		// writers' and the rollups' state, the stages' state).
		fig{"heap_retained_bytes", ref.liveMiB * (1 << 20), last.liveMiB * (1 << 20)},
	)
	// delta.Load reads every live file's add action (and, from a V2
	// checkpoint, one sidecar per 8-day block of the current 64 days): its
	// time grows with the live files like the checkpoint's state. Loads of
	// a few ms are the shared machine's noise: 20 ms floor on the sum.
	linear = append(linear, fig{"load_ms", max(20, sumLoad(ref)), max(20, sumLoad(last))})
	ratio := func(f fig) float64 {
		switch {
		case f.ref > 0:
			return f.last / f.ref
		case f.last > 0:
			return math.Inf(1)
		}
		return 1
	}
	worst, worstName := 0.0, ""
	sort.Slice(figs, func(i, j int) bool { return figs[i].name < figs[j].name })
	for _, f := range figs {
		r := ratio(f)
		fmt.Printf("# growth %s day%d/day%d = %.3f (%.0f → %.0f)\n", f.name, last.n, ref.n, r, f.ref, f.last)
		if r > worst {
			worst, worstName = r, f.name
		}
	}
	for _, f := range linear {
		fmt.Printf("# linear %s day%d/day%d = %.3f (%.0f → %.0f): grows with the retained history, not in the ratio\n",
			f.name, last.n, ref.n, ratio(f), f.ref, f.last)
	}
	var files int64
	for _, t := range tables {
		files += last.liveFiles[t] - ref.liveFiles[t]
	}
	if files > 0 {
		fmt.Printf("# heap after a GC per live file added since day %d: %.0f B (%d files)\n", ref.n, (last.liveMiB-ref.liveMiB)*(1<<20)/float64(files), files)
	}
	// The day's peak heap sizes the process (soak_heap_mib_max), and the
	// median of its samples is the typical heap, but both follow the GC's
	// sawtooth: with the collector's GOGC=400 the heap reaches about five
	// times what was live when the last GC started, so they move from one
	// day to the next with what was in flight then (compaction's pages,
	// the rollups' reads): ±10 % (median) and ±25 % (peak). They are
	// printed with their spread over the days from day 8, not in the
	// ratio; what the collector keeps, heap_retained_bytes, is.
	for _, h := range []struct {
		name string
		of   func(day) float64
	}{{"heap_median", func(d day) float64 { return d.heapMed }}, {"heap_peak", func(d day) float64 { return d.heapMiB }}} {
		var xs []float64
		for _, d := range days[ref.n-1:] {
			xs = append(xs, h.of(d))
		}
		fmt.Printf("# %s day%d/day%d = %.3f (%.1f → %.1f MiB); days %d-%d: %.1f-%.1f MiB, median %.1f\n",
			h.name, last.n, ref.n, h.of(last)/h.of(ref), h.of(ref), h.of(last), ref.n, last.n, slices.Min(xs), slices.Max(xs), median(xs))
	}
	fmt.Printf("# largest growth: %s\n", worstName)
	fmt.Printf("soak_growth_ratio=%.3f\n", worst)
	fmt.Printf("soak_heap_mib_max=%.1f\n", heapPeak)
	fmt.Printf("soak_epoch_cpu_ratio=%.3f\n", last.cpuMS/days[0].cpuMS)
}

// median returns the median of xs (not empty).
func median(xs []float64) float64 {
	ys := slices.Clone(xs)
	slices.Sort(ys)
	return ys[len(ys)/2]
}
