-- wrk script: send pre-built requests, each once, from a file (bench/ingest.py, bench/reads.py write it).
--   wrk -t2 -c64 -d10s --latency -s bench/deliveries.lua http://127.0.0.1:PORT -- FILE THREADS [SKIP]
-- One line per request, tab-separated: METHOD, PATH (with query string), HEADER-NAME, HEADER-VALUE, BODY.
-- Thread i takes lines i, i+THREADS, ...: no two threads send the same delivery. Everything is
-- parsed and formatted in init(), so request() only hands out a prepared string (wrk's cost stays small).
-- If a thread runs out it starts again from its first line; the caller counts those (duplicates).
-- SKIP (default 0) leaves out the file's first SKIP lines: a caller that runs wrk several times
-- over one file (bench/memory.py) goes on where the previous run stopped.

local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

function init(args)
   local file, threads, skip = args[1], tonumber(args[2]), tonumber(args[3] or "0")
   requests = {}
   local i = 0
   for line in io.lines(file) do
      if i >= skip and (i - skip) % threads == id then
         local method, path, name, value, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
         local headers = {}
         if name ~= "" then headers[name] = value end
         if body ~= "" then
            headers["Content-Type"] = "application/json"
         else
            body = nil
         end
         requests[#requests + 1] = wrk.format(method, path, headers, body)
      end
      i = i + 1
   end
   n = 0
end

function request()
   n = n + 1
   if n > #requests then n = 1 end
   return requests[n]
end

function done(summary, latency, requests)
   -- One machine-readable line for the caller; latencies in microseconds.
   io.write(string.format(
      "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d max_us=%d status_errors=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
      summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
      summary.errors.status, summary.errors.connect, summary.errors.read, summary.errors.write,
      summary.errors.timeout))
end
