-- wrk script: the same Send Message request bpsms makes, to the simulator.
-- BPSMS_TOKEN must hold an access token the simulator issued.
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BPSMS_TOKEN")

request = function()
  n = n + 1
  local body = string.format(
    '{"From":"+16505550100","To":"+1415%07d","Body":"Hello Name%d"}', n % 10000000, n)
  return wrk.format(nil, nil, nil, body)
end
