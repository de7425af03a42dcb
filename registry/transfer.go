package registry

import (
	"log/slog"
	"strconv"

	"github.com/openpm/opm"
)

// How many blobs push, prefetch and mirror move at once: git config
// transfer.jobs of the home (opm sync SRC DST --jobs overrides it for a
// mirror).
const (
	TransferJobsKey     = "transfer.jobs"
	DefaultTransferJobs = 16
	MaxTransferJobs     = 256
)

// ParseTransferJobs parses a transfer.jobs value.
func ParseTransferJobs(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxTransferJobs {
		return 0, opm.Errorf(opm.ErrInvalid, "%s %q: want a count from 1 to %d", TransferJobsKey, s, MaxTransferJobs)
	}
	return n, nil
}

// TransferJobs returns the home's transfer.jobs, or DefaultTransferJobs
// when it is unset (or, written by hand, not a count: then with a warning).
func (r *Registry) TransferJobs() int {
	s, err := r.Config(TransferJobsKey)
	if err != nil || s == "" {
		return DefaultTransferJobs
	}
	n, err := ParseTransferJobs(s)
	if err != nil {
		slog.Warn("ignoring "+TransferJobsKey, "err", err.Error(), "using", DefaultTransferJobs)
		return DefaultTransferJobs
	}
	return n
}
