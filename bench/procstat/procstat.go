// Package procstat reads what a process costs from Linux's /proc: its CPU
// time (/proc/PID/stat) and resident memory (/proc/PID/status). The
// benchmarks (bench, bench/scale) measure their child processes with it.
package procstat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ClockTicks is USER_HZ, the unit of CPU times in /proc (utime and stime
// in /proc/PID/stat, the cpu lines of /proc/stat). It is 100 on every
// Linux architecture Go supports.
const ClockTicks = 100

// Times is a process's CPU time, all its threads.
type Times struct {
	User, System time.Duration
}

// Total is user and system time together.
func (t Times) Total() time.Duration { return t.User + t.System }

// ReadTimes reads utime and stime from /proc/PID/stat.
func ReadTimes(pid int) (Times, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Times{}, err
	}
	return ParseStat(string(b))
}

// CPU is ReadTimes' total: the process's CPU time.
func CPU(pid int) (time.Duration, error) {
	t, err := ReadTimes(pid)
	return t.Total(), err
}

// ParseStat extracts utime and stime (fields 14 and 15) from the text of
// /proc/PID/stat. The command name (field 2) is in parentheses and may
// hold spaces and parentheses itself, so fields are counted after the last ')'.
func ParseStat(stat string) (Times, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return Times{}, fmt.Errorf("procstat: /proc stat: no ')' in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return Times{}, fmt.Errorf("procstat: /proc stat: %d fields after the name, want at least 13", len(f))
	}
	var ticks [2]int64
	for i, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Times{}, fmt.Errorf("procstat: /proc stat: cpu time %q: %w", s, err)
		}
		ticks[i] = n
	}
	return Times{User: time.Duration(ticks[0]) * time.Second / ClockTicks, System: time.Duration(ticks[1]) * time.Second / ClockTicks}, nil
}

// Mem is a process's resident memory from /proc/PID/status.
type Mem struct {
	RSS  int64 // VmRSS: all resident pages, including the binary's shared file pages
	Anon int64 // RssAnon: resident anonymous memory (heap, stacks): what the process costs alone
}

// ReadMem reads VmRSS and RssAnon from /proc/PID/status.
func ReadMem(pid int) (Mem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Mem{}, err
	}
	return ParseStatus(b)
}

// RSS is ReadMem's VmRSS.
func RSS(pid int) (int64, error) {
	m, err := ReadMem(pid)
	return m.RSS, err
}

// ParseStatus extracts VmRSS and RssAnon from the text of
// /proc/PID/status. A kernel without RssAnon leaves it zero.
func ParseStatus(b []byte) (Mem, error) {
	var m Mem
	found := 0
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		var dst *int64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &m.RSS
		case bytes.HasPrefix(line, []byte("RssAnon:")):
			dst = &m.Anon
		default:
			continue
		}
		_, rest, _ := bytes.Cut(line, []byte(":"))
		f := strings.Fields(string(rest)) // "12345 kB"
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("procstat: /proc status: odd line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return m, fmt.Errorf("procstat: /proc status: %q: not a size", line)
		}
		*dst = kb << 10
		found++
	}
	if m.RSS == 0 && found == 0 {
		return m, errors.New("procstat: /proc status has no VmRSS")
	}
	return m, nil
}

// SettleRSS waits until the RSS of every pid stops moving (two readings
// 250ms apart within 512 KiB of each other), for at most max or until ctx
// ends. Go returns freed memory to the OS gradually; measuring before it
// settles would charge the next measurement for the last one's garbage,
// or credit it.
func SettleRSS(ctx context.Context, pids []int, max time.Duration) {
	deadline := time.Now().Add(max)
	prev := make([]int64, len(pids))
	for i, pid := range pids {
		prev[i], _ = RSS(pid)
	}
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		stable := true
		for i, pid := range pids {
			r, _ := RSS(pid)
			if d := r - prev[i]; d > 512<<10 || d < -512<<10 {
				stable = false
			}
			prev[i] = r
		}
		if stable {
			return
		}
	}
}
