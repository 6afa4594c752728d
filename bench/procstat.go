package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports.
const clockTicks = 100

// memStat is a process's resident memory from /proc/PID/status.
type memStat struct {
	RSS  int64 // VmRSS: all resident pages, including the binary's shared file pages
	Anon int64 // RssAnon: resident anonymous memory (heap, stacks): what the process costs alone
}

// memory reads VmRSS and RssAnon from /proc/PID/status.
func memory(pid int) (memStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memStat{}, err
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (memStat, error) {
	var m memStat
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
			return m, fmt.Errorf("bench: /proc status: odd line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 {
			return m, fmt.Errorf("bench: /proc status: %q: not a size", line)
		}
		*dst = kb << 10
		found++
	}
	if m.RSS == 0 && found == 0 {
		return m, errors.New("bench: /proc status has no VmRSS")
	}
	return m, nil
}

// rssBytes reads VmRSS from /proc/PID/status.
func rssBytes(pid int) (int64, error) {
	m, err := memory(pid)
	return m.RSS, err
}

// cpuTime reads utime+stime from /proc/PID/stat.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(string(b))
}

// parseStatCPU extracts utime+stime (fields 14 and 15) from the text of
// /proc/PID/stat. The command name (field 2) is in parentheses and may
// hold spaces and parentheses itself, so fields are counted after the last ')'.
func parseStatCPU(stat string) (time.Duration, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc stat: no ')' in %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc stat: %d fields after the name, want at least 13", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: /proc stat: cpu time %q: %w", s, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// settleRSS waits until the RSS of every pid stops moving (two readings
// 250ms apart within 512 KiB of each other), for at most max. Go returns
// freed memory to the OS gradually; measuring before it settles would
// charge the next scenario for the last one's garbage, or credit it.
func settleRSS(pids []int, max time.Duration) {
	deadline := time.Now().Add(max)
	prev := make([]int64, len(pids))
	for i, pid := range pids {
		prev[i], _ = rssBytes(pid)
	}
	for time.Now().Before(deadline) {
		time.Sleep(250 * time.Millisecond)
		stable := true
		for i, pid := range pids {
			r, _ := rssBytes(pid)
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
