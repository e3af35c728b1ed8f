-- wrk script of the racer-profiles benchmark (benchmarks/run.py starts it).
--
--   wrk -tT -cC -dDs --latency -s bench.lua URL -- METHOD PATH TOKENS NTHREADS [BODY]
--
-- METHOD, PATH  the request line (PATH is appended to URL's host).
-- TOKENS        a file of bearer tokens, one a line, or "-" for no Authorization.
--               Thread t of NTHREADS takes the tokens whose index i has
--               i % NTHREADS == t and sends them round-robin, so the two
--               threads never share an account and, with many more tokens than
--               connections, concurrent requests are on distinct accounts.
--               With fewer tokens than threads, every thread sends them all.
-- BODY          a file whose bytes are the JSON body, or "-" (none). A body with
--               %PROFILE% in it alternates per token: a TOKENS line
--               "token<TAB>A<TAB>B" sends A, then B, then A ... in place of
--               %PROFILE% (PUT default: every request a real switch, when A is
--               not the account's default at the start).
--
-- At the end one line "WRKJSON {...}" reports requests, duration, errors,
-- latency percentiles (microseconds) and the count of each status code.

local counter = 0
local threads = {}

function setup(thread)
    thread:set("tid", counter)
    counter = counter + 1
    table.insert(threads, thread)
end

local function read_lines(path)
    local lines = {}
    for line in io.lines(path) do
        if #line > 0 then
            lines[#lines + 1] = line
        end
    end
    return lines
end

local function read_file(path)
    local f = assert(io.open(path, "rb"))
    local data = f:read("*a")
    f:close()
    return data
end

function init(args)
    local method, path, tokens_file, nthreads, body_file = args[1], args[2], args[3], tonumber(args[4]), args[5]
    local body = nil
    if body_file and body_file ~= "-" then
        body = read_file(body_file)
    end
    local base = {}
    if body then
        base["Content-Type"] = "application/json"
    end
    requests_ = {}
    variants_ = {}
    if tokens_file ~= "-" then
        local all = read_lines(tokens_file)
        -- Fewer tokens than threads (one shared account): every thread sends them all.
        local split = #all >= nthreads
        for i, line in ipairs(all) do
            if not split or (i - 1) % nthreads == tid then
                local fields = {}
                for field in string.gmatch(line, "[^\t]+") do
                    fields[#fields + 1] = field
                end
                local headers = {["Authorization"] = "Bearer " .. fields[1]}
                for k, v in pairs(base) do
                    headers[k] = v
                end
                if body and fields[2] and string.find(body, "%PROFILE%", 1, true) then
                    requests_[#requests_ + 1] = wrk.format(method, path, headers, (body:gsub("%%PROFILE%%", fields[2])))
                    variants_[#requests_] = wrk.format(method, path, headers, (body:gsub("%%PROFILE%%", fields[3])))
                else
                    requests_[#requests_ + 1] = wrk.format(method, path, headers, body)
                end
            end
        end
    end
    if #requests_ == 0 then
        requests_[1] = wrk.format(method, path, base, body)
    end
    sent_ = 0
    statuses = {}
end

function request()
    sent_ = sent_ + 1
    local i = (sent_ - 1) % #requests_ + 1
    -- Every second pass over the tokens sends the alternative body, if any.
    if variants_[i] and math.floor((sent_ - 1) / #requests_) % 2 == 1 then
        return variants_[i]
    end
    return requests_[i]
end

function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
    local counts = {}
    for _, thread in ipairs(threads) do
        local s = thread:get("statuses")
        if s then
            for code, n in pairs(s) do
                counts[code] = (counts[code] or 0) + n
            end
        end
    end
    local parts = {}
    for code, n in pairs(counts) do
        parts[#parts + 1] = string.format('"%d":%d', code, n)
    end
    local e = summary.errors
    io.write(string.format(
        'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
        '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
        '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"statuses":{%s}}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
        table.concat(parts, ",")))
end
