-- wrk script: POST a promotion request (REQUEST, default the corpus's allowed baseline)
-- as JSON to whatever URL wrk is given.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local path = os.getenv("REQUEST") or "corpus/cases/prod-allow-baseline/request.json"
local file = assert(io.open(path, "rb"))
wrk.body = file:read("*a")
file:close()
