package registry

// The local store's quota: git config cache.quota of the home, a size or a
// percentage of the filesystem holding the home (docs/mount.md, "The local
// cache").

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"

	"github.com/openpm/opm"
)

// Configuration keys of the cache.
const (
	QuotaKey = "cache.quota"
	PinKey   = "cache.pin"
)

// Quota defaults and the low-water mark.
const (
	// DefaultQuotaPercent of the filesystem holding the home is the quota
	// when cache.quota is unset, but never less than MinDefaultQuota.
	DefaultQuotaPercent = 10
	MinDefaultQuota     = 1 << 30
	// LowWaterPercent of the quota is what eviction brings the store down
	// to once it is over quota, so that it does not run at every fetch.
	LowWaterPercent = 90
)

// Quota is the size limit of the local store.
type Quota struct {
	Bytes    int64  `json:"bytes"`
	LowWater int64  `json:"low_water"`
	Setting  string `json:"setting"` // cache.quota as written, or "default (10% of the filesystem, at least 1 GiB)"
	Default  bool   `json:"default"`
}

// ParseQuota parses a cache.quota value: a size with an optional unit (B,
// K/KiB, M/MiB, G/GiB, T/TiB, KB/MB/GB/TB for powers of 1000; plain bytes
// without one), or a percentage (1% to 100%) of the filesystem holding the
// home. It returns either bytes or percent.
func ParseQuota(s string) (bytes int64, percent float64, err error) {
	bad := func(why string) (int64, float64, error) {
		return 0, 0, opm.Errorf(opm.ErrInvalid, "%s %q: %s; want a size like 20GiB, 500MB or 1073741824, or a percentage like 10%% of the filesystem holding the home", QuotaKey, s, why)
	}
	v := strings.TrimSpace(s)
	if v == "" {
		return bad("empty")
	}
	if num, ok := strings.CutSuffix(v, "%"); ok {
		p, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || math.IsNaN(p) || p <= 0 || p > 100 {
			return bad("a percentage must be above 0 and at most 100")
		}
		return 0, p, nil
	}
	i := len(v)
	for i > 0 && (v[i-1] < '0' || v[i-1] > '9') && v[i-1] != '.' {
		i--
	}
	num, unit := strings.TrimSpace(v[:i]), strings.ToLower(strings.TrimSpace(v[i:]))
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	if mult == 0 {
		return bad("unknown unit " + strconv.Quote(v[i:]))
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || strings.ContainsAny(num, "eE+-") {
		return bad("not a number")
	}
	n := f * mult
	if n < 1 || n > math.MaxInt64/2 {
		return bad("out of range")
	}
	return int64(n), 0, nil
}

// Quota returns the local store's quota: cache.quota, else the default.
func (r *Registry) Quota() (Quota, error) {
	s, err := r.Config(QuotaKey)
	if err != nil {
		return Quota{}, err
	}
	q := Quota{Setting: s}
	if s == "" {
		fsSize, err := fsBytes(r.dir)
		if err != nil {
			return Quota{}, err
		}
		q.Bytes = max(fsSize*DefaultQuotaPercent/100, MinDefaultQuota)
		q.Default = true
		q.Setting = fmt.Sprintf("default (%d%% of the filesystem, at least %s)", DefaultQuotaPercent, opm.HumanSize(MinDefaultQuota))
	} else {
		n, pct, err := ParseQuota(s)
		if err != nil {
			return Quota{}, err
		}
		if pct > 0 {
			fsSize, err := fsBytes(r.dir)
			if err != nil {
				return Quota{}, err
			}
			n = int64(float64(fsSize) * pct / 100)
		}
		q.Bytes = max(n, 1)
	}
	q.LowWater = q.Bytes / 100 * LowWaterPercent
	return q, nil
}

// fsBytes is the size of the filesystem holding dir.
func fsBytes(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fsError(fmt.Errorf("size of the filesystem of %s: %w", dir, err))
	}
	return int64(st.Blocks) * int64(st.Bsize), nil
}
