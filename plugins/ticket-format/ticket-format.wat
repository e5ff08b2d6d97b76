;; ticket-format: the promotion's change ticket must be a configured prefix followed by digits.
;;
;; Plugin for promo-policy, ABI v1 (plugins/ABI.md), hand-written WAT: no toolchain needed,
;; wasmtime compiles the text directly.
;;
;; Reads (from the ABI v1 input object):
;;   request.change.ticket            the ticket, e.g. "CHG-1234"
;;   environment                      the target environment, e.g. "prod"
;;   config.by_environment.<env>      allowed prefixes for that environment, if present
;;   config.prefixes                  allowed prefixes otherwise, e.g. ["CHG-", "INC-"]
;; Writes one of:
;;   ok                   {"ok":true,  "facts":{"ticket":..., "prefix":...}}
;;   ticket.missing       no ticket, or not a non-empty string
;;   ticket.format        the ticket is not <allowed prefix><one or more ASCII digits>
;;   ticket.config        no usable prefix list for the environment (fails closed)
;;   ticket.input         the input is not a JSON object
;;
;; The JSON scan, and its limits:
;; - It is a structural scan, not a substring search: $find walks an object's members one
;;   by one and $skip steps over whole values (strings with their escapes, nested
;;   objects and arrays), so a "ticket" key inside an attestation payload, a string
;;   value that contains "ticket", or request.ticket at another level never matches.
;; - It assumes well-formed JSON, which the host guarantees (it serializes the input
;;   itself); on malformed input it finds nothing and fails closed, and every read is
;;   bounded by the input's end ($ch returns 0 past it).
;; - Keys and values are compared as raw bytes, without decoding escapes: a key written
;;   as "tick\u0065t" is not found, and a ticket with escapes never matches (digits and
;;   prefixes are plain ASCII in practice). Raw string contents are copied into the
;;   result as they are, which is valid JSON string content because they came from a
;;   JSON string.
;; - When a key appears twice in one object the first wins.
;; - Nesting is followed iteratively (a depth counter), so deep input cannot overflow
;;   the wasm stack.
(module
  (memory (export "memory") 1)

  ;; Heap starts after the constant strings below (they end before 1024).
  (global $heap (mut i32) (i32.const 1024))
  ;; One past the last input byte, set by check.
  (global $end (mut i32) (i32.const 0))
  ;; Result write cursor.
  (global $out (mut i32) (i32.const 0))

  ;; Constant strings; offsets and lengths are repeated at each use.
  ;; K_REQUEST: offset 16, length 7
  (data (i32.const 16) "request")
  ;; K_CHANGE: offset 24, length 6
  (data (i32.const 24) "change")
  ;; K_TICKET: offset 32, length 6
  (data (i32.const 32) "ticket")
  ;; K_CONFIG: offset 40, length 6
  (data (i32.const 40) "config")
  ;; K_PREFIXES: offset 48, length 8
  (data (i32.const 48) "prefixes")
  ;; K_BY_ENV: offset 56, length 14
  (data (i32.const 56) "by_environment")
  ;; K_ENV: offset 72, length 11
  (data (i32.const 72) "environment")
  ;; OK_1: offset 84, length 46
  (data (i32.const 84) "{\"ok\":true,\"violations\":[],\"facts\":{\"ticket\":\"")
  ;; OK_2: offset 132, length 12
  (data (i32.const 132) "\",\"prefix\":\"")
  ;; OK_3: offset 144, length 3
  (data (i32.const 144) "\"}}")
  ;; MISSING_1: offset 148, length 123
  (data (i32.const 148) "{\"ok\":false,\"violations\":[{\"id\":\"ticket.missing\",\"msg\":\"a change ticket (request.change.ticket) is required to promote to `")
  ;; MISSING_2: offset 272, length 16
  (data (i32.const 272) "`\"}],\"facts\":{}}")
  ;; FORMAT_1: offset 288, length 70
  (data (i32.const 288) "{\"ok\":false,\"violations\":[{\"id\":\"ticket.format\",\"msg\":\"change ticket `")
  ;; FORMAT_2: offset 360, length 64
  (data (i32.const 360) "` does not match an allowed prefix followed by digits (allowed: ")
  ;; FORMAT_3: offset 424, length 24
  (data (i32.const 424) ")\"}],\"facts\":{\"ticket\":\"")
  ;; BACKTICK: offset 448, length 1
  (data (i32.const 448) "`")
  ;; SEP: offset 452, length 4
  (data (i32.const 452) "`, `")
  ;; CONFIG_BAD: offset 456, length 195
  (data (i32.const 456) "{\"ok\":false,\"violations\":[{\"id\":\"ticket.config\",\"msg\":\"the plugin config has no usable prefixes: set config.prefixes (or config.by_environment.<env>) to a non-empty list of strings\"}],\"facts\":{}}")
  ;; INPUT_BAD: offset 652, length 118
  (data (i32.const 652) "{\"ok\":false,\"violations\":[{\"id\":\"ticket.input\",\"msg\":\"the plugin input is not the JSON object of ABI v1\"}],\"facts\":{}}")
  ;; NO_MEMORY: offset 772, length 119
  (data (i32.const 772) "{\"ok\":false,\"violations\":[{\"id\":\"ticket.memory\",\"msg\":\"the plugin could not allocate room for its result\"}],\"facts\":{}}")

  (func (export "promo_abi_version") (result i32) (i32.const 1))

  ;; Bump allocator: 8-byte aligned, grows memory as needed, 0 on failure. Nothing is
  ;; ever freed: the host drops the whole instance after one check.
  (func $alloc (export "alloc") (param $len i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    ;; wrapped around: more than 4 GiB asked for
    (if (i32.lt_u (local.get $end) (local.get $p)) (then (return (i32.const 0))))
    (local.set $have (i32.shl (memory.size) (i32.const 16)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.sub
                  (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                  (memory.size)))
              (i32.const -1))
          (then (return (i32.const 0))))))
    (global.set $heap (local.get $end))
    (local.get $p))

  (func (export "dealloc") (param i32 i32))

  ;; ---- JSON scan ----

  ;; The byte at $p, or 0 at or past the input's end.
  (func $ch (param $p i32) (result i32)
    (if (result i32) (i32.and (i32.ge_s (local.get $p) (i32.const 0))
                              (i32.lt_u (local.get $p) (global.get $end)))
      (then (i32.load8_u (local.get $p)))
      (else (i32.const 0))))

  ;; Skips JSON whitespace.
  (func $ws (param $p i32) (result i32)
    (local $c i32)
    (block $done
      (loop $next
        (local.set $c (call $ch (local.get $p)))
        (br_if $done
          (i32.eqz
            (i32.or
              (i32.or (i32.eq (local.get $c) (i32.const 0x20)) (i32.eq (local.get $c) (i32.const 0x09)))
              (i32.or (i32.eq (local.get $c) (i32.const 0x0a)) (i32.eq (local.get $c) (i32.const 0x0d))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (local.get $p))

  ;; $p is at a string's opening quote; returns the position after its closing quote,
  ;; or -1 if the string does not end.
  (func $str_end (param $p i32) (result i32)
    (local $c i32)
    (local.set $p (i32.add (local.get $p) (i32.const 1)))
    (loop $next
      (if (i32.ge_u (local.get $p) (global.get $end)) (then (return (i32.const -1))))
      (local.set $c (i32.load8_u (local.get $p)))
      ;; backslash: skip it and the escaped byte (\uXXXX's hex digits are plain bytes)
      (if (i32.eq (local.get $c) (i32.const 0x5c))
        (then
          (local.set $p (i32.add (local.get $p) (i32.const 2)))
          (br $next)))
      (if (i32.eq (local.get $c) (i32.const 0x22))
        (then (return (i32.add (local.get $p) (i32.const 1)))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br $next))
    (i32.const -1))

  ;; $p is at the start of a value; returns the position after it, or -1.
  (func $skip (param $p i32) (result i32)
    (local $c i32) (local $depth i32) (local $start i32)
    (local.set $c (call $ch (local.get $p)))
    (if (i32.eq (local.get $c) (i32.const 0x22))
      (then (return (call $str_end (local.get $p)))))
    (if (i32.or (i32.eq (local.get $c) (i32.const 0x7b)) (i32.eq (local.get $c) (i32.const 0x5b)))
      (then
        (loop $next
          (if (i32.ge_u (local.get $p) (global.get $end)) (then (return (i32.const -1))))
          (local.set $c (i32.load8_u (local.get $p)))
          (if (i32.eq (local.get $c) (i32.const 0x22))
            (then
              (local.set $p (call $str_end (local.get $p)))
              (if (i32.lt_s (local.get $p) (i32.const 0)) (then (return (i32.const -1))))
              (br $next)))
          (if (i32.or (i32.eq (local.get $c) (i32.const 0x7b)) (i32.eq (local.get $c) (i32.const 0x5b)))
            (then (local.set $depth (i32.add (local.get $depth) (i32.const 1)))))
          (if (i32.or (i32.eq (local.get $c) (i32.const 0x7d)) (i32.eq (local.get $c) (i32.const 0x5d)))
            (then (local.set $depth (i32.sub (local.get $depth) (i32.const 1)))))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (if (i32.eqz (local.get $depth)) (then (return (local.get $p))))
          (br $next))))
    ;; number, true, false, null: up to the next delimiter
    (local.set $start (local.get $p))
    (block $done
      (loop $next
        (local.set $c (call $ch (local.get $p)))
        (br_if $done (i32.eqz (local.get $c)))
        (br_if $done (i32.eq (local.get $c) (i32.const 0x2c)))
        (br_if $done (i32.eq (local.get $c) (i32.const 0x7d)))
        (br_if $done (i32.eq (local.get $c) (i32.const 0x5d)))
        (br_if $done (i32.le_u (local.get $c) (i32.const 0x20)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next)))
    (if (result i32) (i32.eq (local.get $p) (local.get $start))
      (then (i32.const -1))
      (else (local.get $p))))

  ;; 1 if the $n bytes at $a and $b are equal.
  (func $memeq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (local $i i32)
    (block $differ
      (loop $next
        (if (i32.ge_u (local.get $i) (local.get $n)) (then (return (i32.const 1))))
        (br_if $differ
          (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                  (i32.load8_u (i32.add (local.get $b) (local.get $i)))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 0))

  ;; In the object at $obj (-1 = none), the position of the value of the member whose
  ;; key is the $klen raw bytes at $key; -1 if $obj is not an object or has no such key.
  (func $find (param $obj i32) (param $key i32) (param $klen i32) (result i32)
    (local $p i32) (local $ks i32) (local $q i32)
    (if (i32.lt_s (local.get $obj) (i32.const 0)) (then (return (i32.const -1))))
    (local.set $p (call $ws (local.get $obj)))
    (if (i32.ne (call $ch (local.get $p)) (i32.const 0x7b)) (then (return (i32.const -1))))
    (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1))))
    (loop $member
      (if (i32.ne (call $ch (local.get $p)) (i32.const 0x22)) (then (return (i32.const -1))))
      (local.set $ks (i32.add (local.get $p) (i32.const 1)))
      (local.set $q (call $str_end (local.get $p)))
      (if (i32.lt_s (local.get $q) (i32.const 0)) (then (return (i32.const -1))))
      (local.set $p (call $ws (local.get $q)))
      (if (i32.ne (call $ch (local.get $p)) (i32.const 0x3a)) (then (return (i32.const -1))))
      (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1))))
      ;; key length is $q - 1 - $ks
      (if (i32.eq (i32.sub (i32.sub (local.get $q) (i32.const 1)) (local.get $ks)) (local.get $klen))
        (then
          (if (call $memeq (local.get $ks) (local.get $key) (local.get $klen))
            (then (return (local.get $p))))))
      (local.set $p (call $skip (local.get $p)))
      (if (i32.lt_s (local.get $p) (i32.const 0)) (then (return (i32.const -1))))
      (local.set $p (call $ws (local.get $p)))
      ;; '}' (or anything but ',') ends the search
      (if (i32.ne (call $ch (local.get $p)) (i32.const 0x2c)) (then (return (i32.const -1))))
      (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1))))
      (br $member))
    (i32.const -1))

  ;; 1 if [$s, $e) is one or more ASCII digits.
  (func $all_digits (param $s i32) (param $e i32) (result i32)
    (local $c i32)
    (if (i32.ge_u (local.get $s) (local.get $e)) (then (return (i32.const 0))))
    (loop $next
      (local.set $c (i32.load8_u (local.get $s)))
      (if (i32.or (i32.lt_u (local.get $c) (i32.const 0x30)) (i32.gt_u (local.get $c) (i32.const 0x39)))
        (then (return (i32.const 0))))
      (local.set $s (i32.add (local.get $s) (i32.const 1)))
      (br_if $next (i32.lt_u (local.get $s) (local.get $e))))
    (i32.const 1))

  ;; ---- result ----

  (func $emit (param $src i32) (param $n i32)
    (memory.copy (global.get $out) (local.get $src) (local.get $n))
    (global.set $out (i32.add (global.get $out) (local.get $n))))

  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  ;; ---- the check ----

  (func (export "check") (param $ptr i32) (param $len i32) (result i64)
    (local $root i32) (local $env i32) (local $env_s i32) (local $env_n i32)
    (local $cfg i32) (local $list i32) (local $by_env i32)
    (local $ticket i32) (local $t_s i32) (local $t_e i32) (local $t_n i32)
    (local $p i32) (local $q i32) (local $c i32) (local $pre_s i32) (local $pre_n i32)
    (local $count i32) (local $match i32) (local $start i32) (local $first i32)

    (global.set $end (i32.add (local.get $ptr) (local.get $len)))
    (local.set $root (call $ws (local.get $ptr)))
    (if (i32.ne (call $ch (local.get $root)) (i32.const 0x7b))
      (then (return (call $pack (i32.const 652) (i32.const 118)))))          ;; INPUT_BAD

    ;; environment: raw string contents, or empty
    (local.set $env (call $find (local.get $root) (i32.const 72) (i32.const 11)))  ;; "environment"
    (if (i32.eq (call $ch (local.get $env)) (i32.const 0x22))
      (then
        (local.set $env_s (i32.add (local.get $env) (i32.const 1)))
        (local.set $q (call $str_end (local.get $env)))
        (if (i32.ge_s (local.get $q) (i32.const 0))
          (then (local.set $env_n (i32.sub (i32.sub (local.get $q) (i32.const 1)) (local.get $env_s)))))))

    ;; prefix list: config.by_environment.<env>, else config.prefixes
    (local.set $cfg (call $find (local.get $root) (i32.const 40) (i32.const 6)))    ;; "config"
    (local.set $list (i32.const -1))
    (if (i32.gt_s (local.get $env_n) (i32.const 0))
      (then
        (local.set $by_env (call $find (local.get $cfg) (i32.const 56) (i32.const 14)))  ;; "by_environment"
        (local.set $list (call $find (local.get $by_env) (local.get $env_s) (local.get $env_n)))))
    (if (i32.lt_s (local.get $list) (i32.const 0))
      (then (local.set $list (call $find (local.get $cfg) (i32.const 48) (i32.const 8)))))  ;; "prefixes"
    (if (i32.ne (call $ch (local.get $list)) (i32.const 0x5b))
      (then (return (call $pack (i32.const 456) (i32.const 195)))))          ;; CONFIG_BAD

    ;; result buffer: constants plus at most the ticket twice, the prefixes and the
    ;; environment, all of which are parts of the input
    (local.set $start (call $alloc (i32.add (i32.shl (local.get $len) (i32.const 1)) (i32.const 1024))))
    (if (i32.eqz (local.get $start))
      (then (return (call $pack (i32.const 772) (i32.const 119)))))          ;; NO_MEMORY
    (global.set $out (local.get $start))

    ;; request.change.ticket
    (local.set $ticket
      (call $find
        (call $find
          (call $find (local.get $root) (i32.const 16) (i32.const 7))         ;; "request"
          (i32.const 24) (i32.const 6))                                       ;; "change"
        (i32.const 32) (i32.const 6)))                                        ;; "ticket"
    (if (i32.eq (call $ch (local.get $ticket)) (i32.const 0x22))
      (then
        (local.set $t_s (i32.add (local.get $ticket) (i32.const 1)))
        (local.set $q (call $str_end (local.get $ticket)))
        (if (i32.ge_s (local.get $q) (i32.const 0))
          (then
            (local.set $t_e (i32.sub (local.get $q) (i32.const 1)))
            (local.set $t_n (i32.sub (local.get $t_e) (local.get $t_s)))))))
    (if (i32.le_s (local.get $t_n) (i32.const 0))
      (then
        (call $emit (i32.const 148) (i32.const 123))                         ;; MISSING_1
        (call $emit (local.get $env_s) (local.get $env_n))
        (call $emit (i32.const 272) (i32.const 16))                          ;; MISSING_2
        (return (call $pack (local.get $start) (i32.sub (global.get $out) (local.get $start))))))

    ;; walk the prefix list: every element must be a string; stop at the first match
    (local.set $match (i32.const -1))
    (local.set $p (call $ws (i32.add (local.get $list) (i32.const 1))))
    (block $walked
      (loop $element
        (local.set $c (call $ch (local.get $p)))
        (br_if $walked (i32.eq (local.get $c) (i32.const 0x5d)))             ;; ']'
        (if (i32.ne (local.get $c) (i32.const 0x22))
          (then (return (call $pack (i32.const 456) (i32.const 195)))))      ;; CONFIG_BAD
        (local.set $q (call $str_end (local.get $p)))
        (if (i32.lt_s (local.get $q) (i32.const 0))
          (then (return (call $pack (i32.const 652) (i32.const 118)))))      ;; INPUT_BAD
        (local.set $pre_s (i32.add (local.get $p) (i32.const 1)))
        (local.set $pre_n (i32.sub (i32.sub (local.get $q) (i32.const 1)) (local.get $pre_s)))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (if (i32.gt_s (local.get $t_n) (local.get $pre_n))
          (then
            (if (i32.and
                  (call $memeq (local.get $t_s) (local.get $pre_s) (local.get $pre_n))
                  (call $all_digits (i32.add (local.get $t_s) (local.get $pre_n)) (local.get $t_e)))
              (then
                (local.set $match (local.get $p))
                (br $walked)))))
        (local.set $p (call $ws (local.get $q)))
        (if (i32.eq (call $ch (local.get $p)) (i32.const 0x2c))
          (then
            (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1))))
            (br $element)))
        (br_if $walked (i32.eq (call $ch (local.get $p)) (i32.const 0x5d)))
        (return (call $pack (i32.const 456) (i32.const 195)))))              ;; CONFIG_BAD
    (if (i32.eqz (local.get $count))
      (then (return (call $pack (i32.const 456) (i32.const 195)))))          ;; CONFIG_BAD

    (if (i32.ge_s (local.get $match) (i32.const 0))
      (then
        (call $emit (i32.const 84) (i32.const 46))                           ;; OK_1
        (call $emit (local.get $t_s) (local.get $t_n))
        (call $emit (i32.const 132) (i32.const 12))                          ;; OK_2
        (call $emit (i32.add (local.get $match) (i32.const 1))
                    (i32.sub (i32.sub (call $str_end (local.get $match)) (i32.const 1))
                             (i32.add (local.get $match) (i32.const 1))))
        (call $emit (i32.const 144) (i32.const 3))                           ;; OK_3
        (return (call $pack (local.get $start) (i32.sub (global.get $out) (local.get $start))))))

    ;; no match: list every allowed prefix in the message (all are strings, checked above)
    (call $emit (i32.const 288) (i32.const 70))                              ;; FORMAT_1
    (call $emit (local.get $t_s) (local.get $t_n))
    (call $emit (i32.const 360) (i32.const 64))                              ;; FORMAT_2
    (call $emit (i32.const 448) (i32.const 1))                               ;; BACKTICK
    (local.set $first (i32.const 1))
    (local.set $p (call $ws (i32.add (local.get $list) (i32.const 1))))
    (block $listed
      (loop $element
        (br_if $listed (i32.ne (call $ch (local.get $p)) (i32.const 0x22)))
        (if (i32.eqz (local.get $first))
          (then (call $emit (i32.const 452) (i32.const 4))))                 ;; SEP
        (local.set $first (i32.const 0))
        (local.set $q (call $str_end (local.get $p)))
        (call $emit (i32.add (local.get $p) (i32.const 1))
                    (i32.sub (i32.sub (local.get $q) (i32.const 1)) (i32.add (local.get $p) (i32.const 1))))
        (local.set $p (call $ws (local.get $q)))
        (br_if $listed (i32.ne (call $ch (local.get $p)) (i32.const 0x2c)))
        (local.set $p (call $ws (i32.add (local.get $p) (i32.const 1))))
        (br $element)))
    (call $emit (i32.const 448) (i32.const 1))                               ;; BACKTICK
    (call $emit (i32.const 424) (i32.const 24))                              ;; FORMAT_3
    (call $emit (local.get $t_s) (local.get $t_n))
    (call $emit (i32.const 144) (i32.const 3))                               ;; OK_3
    (call $pack (local.get $start) (i32.sub (global.get $out) (local.get $start)))))
