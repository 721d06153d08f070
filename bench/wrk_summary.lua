-- wrk reporter for bench/gateway_vs_nginx.sh: after the run, one JSON line with what a saturation
-- round needs (wrk's own text report comes before it).
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout))
end
