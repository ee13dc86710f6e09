// Package emftest checks log lines against the CloudWatch Embedded Metric Format specification,
// as CloudWatch Logs would before extracting metrics: tests of every emitter use it.
package emftest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/capifcore/capif-security/shared/metrics"
)

// Published is one metric value a line publishes.
type Published struct {
	Namespace  string
	Name, Unit string
	Value      float64
	Dimensions map[string]string // one dimension set's names and values; empty for none
}

// standardUnits are CloudWatch's StandardUnit values.
var standardUnits = map[string]bool{}

func init() {
	for _, u := range strings.Fields(`Seconds Microseconds Milliseconds Bytes Kilobytes Megabytes Gigabytes
		Terabytes Bits Kilobits Megabits Gigabits Terabits Percent Count Bytes/Second Kilobytes/Second
		Megabytes/Second Gigabytes/Second Terabytes/Second Bits/Second Kilobits/Second Megabits/Second
		Gigabits/Second Terabits/Second Count/Second None`) {
		standardUnits[u] = true
	}
}

// Parse validates one JSON log line that carries EMF and returns what it publishes, one entry
// per metric and dimension set. A line without "_aws" is an error.
func Parse(line []byte) ([]Published, error) {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(line, &root); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	raw, ok := root["_aws"]
	if !ok {
		return nil, errors.New(`no "_aws" member`)
	}
	var aws struct {
		Timestamp         json.RawMessage
		CloudWatchMetrics *[]struct {
			Namespace  *string
			Dimensions *[][]string
			Metrics    *[]struct {
				Name *string
				Unit *string
			}
		}
	}
	if err := json.Unmarshal(raw, &aws); err != nil {
		return nil, fmt.Errorf("_aws: %w", err)
	}
	if aws.Timestamp == nil {
		return nil, errors.New("_aws.Timestamp is missing")
	}
	if ts, err := strconv.ParseInt(string(aws.Timestamp), 10, 64); err != nil || ts <= 0 {
		return nil, fmt.Errorf("_aws.Timestamp %s is not a number of epoch milliseconds", aws.Timestamp)
	}
	if aws.CloudWatchMetrics == nil || len(*aws.CloudWatchMetrics) == 0 {
		return nil, errors.New("_aws.CloudWatchMetrics is missing or empty")
	}
	str := func(name string) (string, error) {
		var s string
		if err := json.Unmarshal(root[name], &s); err != nil || s == "" {
			return "", fmt.Errorf("dimension %q has no non-empty string member", name)
		}
		return s, nil
	}
	num := func(name string) (float64, error) {
		var f float64
		if err := json.Unmarshal(root[name], &f); err != nil {
			return 0, fmt.Errorf("metric %q has no numeric member", name)
		}
		return f, nil
	}
	var out []Published
	for i, d := range *aws.CloudWatchMetrics {
		where := fmt.Sprintf("CloudWatchMetrics[%d]", i)
		if d.Namespace == nil || *d.Namespace == "" || len(*d.Namespace) > 255 || strings.HasPrefix(*d.Namespace, "AWS/") {
			return nil, fmt.Errorf("%s: Namespace missing, empty, too long or AWS/", where)
		}
		if d.Dimensions == nil {
			return nil, fmt.Errorf("%s: Dimensions is missing", where)
		}
		if d.Metrics == nil || len(*d.Metrics) == 0 || len(*d.Metrics) > metrics.MaxMetrics {
			return nil, fmt.Errorf("%s: Metrics missing, empty or over %d", where, metrics.MaxMetrics)
		}
		sets := make([]map[string]string, 0, len(*d.Dimensions))
		for _, set := range *d.Dimensions {
			if len(set) > metrics.MaxDimensions {
				return nil, fmt.Errorf("%s: a dimension set of %d, over %d", where, len(set), metrics.MaxDimensions)
			}
			m := map[string]string{}
			for _, name := range set {
				v, err := str(name)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
				m[name] = v
			}
			sets = append(sets, m)
		}
		for _, m := range *d.Metrics {
			if m.Name == nil || *m.Name == "" || len(*m.Name) > 255 {
				return nil, fmt.Errorf("%s: a metric without a Name", where)
			}
			unit := "None"
			if m.Unit != nil {
				unit = *m.Unit
			}
			if !standardUnits[unit] {
				return nil, fmt.Errorf("%s: metric %q: unit %q is not a CloudWatch unit", where, *m.Name, unit)
			}
			v, err := num(*m.Name)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			for _, set := range sets {
				out = append(out, Published{Namespace: *d.Namespace, Name: *m.Name, Unit: unit, Value: v, Dimensions: set})
			}
		}
	}
	return out, nil
}
