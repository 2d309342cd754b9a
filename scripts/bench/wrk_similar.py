#!/usr/bin/env python3
"""wrk helpers shared by the serve benchmarks.

    python3 scripts/bench/wrk_similar.py lua URL OUT.lua      a wrk script asking GET /api/similar?k=10 for every
                                                        song of the server's map in turn
    python3 scripts/bench/wrk_similar.py parse SECONDS WRK_OUTPUT...   sums the JSON lines of several wrk runs
"""
import json, re, sys, urllib.parse, urllib.request

if sys.argv[1] == "lua":
    url, lua = sys.argv[2], sys.argv[3]
    ids = [p["id"] for p in json.load(urllib.request.urlopen(url + "api/map"))["points"]]
    with open(lua, "w") as f:
        f.write("local ids = {" + ",".join(json.dumps(urllib.parse.quote(i, safe="/")) for i in ids) + "}\n")
        f.write('local i = 0\nrequest = function()\n  i = i % #ids + 1\n  return wrk.format("GET", "/api/similar?k=10&id=" .. ids[i])\nend\n')
        f.write('done = function(summary, latency, requests)\n  io.write(string.format("JSON {\\"requests\\": %d, \\"errors\\": %d, \\"p50_ms\\": %.3f, \\"p90_ms\\": %.3f, \\"p99_ms\\": %.3f, \\"max_ms\\": %.3f}\\n", summary.requests, summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout, latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))\nend\n')
else:
    secs = float(sys.argv[2])
    runs = [json.loads(re.search(r"^JSON (.*)$", open(p).read(), re.M).group(1)) for p in sys.argv[3:]]
    r = {"requests": sum(x["requests"] for x in runs), "errors": sum(x["errors"] for x in runs),
         "p50_ms": max(x["p50_ms"] for x in runs), "p99_ms": max(x["p99_ms"] for x in runs), "processes": len(runs)}
    r["requests_per_s"] = r["requests"] / secs
    print(json.dumps(r))
