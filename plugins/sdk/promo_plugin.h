/* promo_plugin.h: ABI v1 exports, a bump allocator, a bounded JSON reader and a result
 * writer for promo-policy plugins written in C without libc; it never reads outside the
 * input and never writes past the result buffer.
 *
 * Include it in exactly one .c file, which defines:
 *
 *     static void plugin_check(pp_value input, pp_out *out);
 *
 * and build with plugins/build.sh (clang --target=wasm32 -nostdlib, see plugins/ABI.md).
 * The header defines the ABI exports `alloc`, `dealloc`, `promo_abi_version` and `check`;
 * `check` sets up the input and the result buffer, calls plugin_check, and returns the
 * packed result. plugin_check reports with pp_violation() and pp_fact_*(); the verdict
 * is `ok` exactly when no violation was reported.
 *
 * The JSON reader is a structural scanner over the input the host serialized: pp_get()
 * walks an object's members and pp_skip() steps over whole values, so a key is only
 * found at the level asked for. Its limits: keys and strings are compared as raw bytes
 * (escapes are not decoded), the input is assumed to be well-formed JSON (on malformed
 * input lookups find nothing, and every read stays inside the input), and the first of
 * duplicate keys wins. Raw string contents are copied to the result as they are, which
 * is valid JSON string content because they came from a JSON string.
 */
#ifndef PROMO_PLUGIN_H
#define PROMO_PLUGIN_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef int i32;
typedef unsigned long long u64;
typedef long long i64;

/* Helpers are static and may go unused by a given plugin. */
#define PP_FN static __attribute__((unused))
#define PP_EXPORT(name) __attribute__((export_name(name), visibility("default")))

/* ---- memory ---- */

extern u8 __heap_base;
static u32 pp_heap;

/* 8-byte aligned bump allocation; 0 when memory cannot grow. Nothing is freed: the
 * host drops the whole instance after one check. */
PP_FN u8 *pp_alloc(u32 len) {
    if (pp_heap == 0) pp_heap = (u32)&__heap_base;
    u32 p = (pp_heap + 7u) & ~7u;
    u32 end = p + len;
    if (end < p) return 0;
    u32 have = (u32)__builtin_wasm_memory_size(0) << 16;
    if (end > have) {
        u32 pages = (u32)(((u64)end + 65535u) >> 16) - (u32)__builtin_wasm_memory_size(0);
        if (__builtin_wasm_memory_grow(0, pages) == (unsigned long)-1) return 0;
    }
    pp_heap = end;
    return (u8 *)p;
}

PP_EXPORT("alloc") u8 *alloc(i32 len) { return len < 0 ? 0 : pp_alloc((u32)len); }
PP_EXPORT("dealloc") void dealloc(u8 *ptr, i32 len) { (void)ptr; (void)len; }
PP_EXPORT("promo_abi_version") i32 promo_abi_version(void) { return 1; }

/* ---- JSON reading ---- */

/* A position in the input; p == 0 means "absent". */
typedef struct { const u8 *p; } pp_value;
/* The raw bytes of a string's contents (between the quotes, escapes as written). */
typedef struct { const u8 *s; u32 n; } pp_str;

static const u8 *pp_end; /* one past the input's last byte */

PP_FN pp_value pp_none(void) { pp_value v = {0}; return v; }
PP_FN int pp_present(pp_value v) { return v.p != 0; }
PP_FN int pp_at(const u8 *p) { return (p && p < pp_end) ? *p : 0; }

PP_FN const u8 *pp_ws(const u8 *p) {
    while (p < pp_end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* p at an opening quote: the position after the closing quote, or 0. */
PP_FN const u8 *pp_str_end(const u8 *p) {
    for (p++; p < pp_end; p++) {
        if (*p == '\\') { p++; continue; }
        if (*p == '"') return p + 1;
    }
    return 0;
}

/* p at a value: the position after it, or 0. Nesting is followed with a counter, so
 * deep input cannot overflow the stack. */
PP_FN const u8 *pp_skip(const u8 *p) {
    int c = pp_at(p);
    if (c == '"') return pp_str_end(p);
    if (c == '{' || c == '[') {
        u32 depth = 0;
        while (p < pp_end) {
            c = *p;
            if (c == '"') { p = pp_str_end(p); if (!p) return 0; continue; }
            if (c == '{' || c == '[') depth++;
            else if (c == '}' || c == ']') depth--;
            p++;
            if (depth == 0) return p;
        }
        return 0;
    }
    const u8 *start = p;
    while (p < pp_end && *p > ' ' && *p != ',' && *p != '}' && *p != ']') p++;
    return p == start ? 0 : p;
}

PP_FN u32 pp_strlen(const char *s) { u32 n = 0; while (s[n]) n++; return n; }

PP_FN int pp_lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

PP_FN int pp_bytes_eq(const u8 *a, const u8 *b, u32 n, int fold_case) {
    for (u32 i = 0; i < n; i++) {
        int x = a[i], y = b[i];
        if (fold_case) { x = pp_lower(x); y = pp_lower(y); }
        if (x != y) return 0;
    }
    return 1;
}

/* obj[key] (ASCII case folded when fold_case). With twice non-NULL every key is read and
 * a second match sets *twice and returns absent (ambiguous); with NULL the first wins. */
PP_FN pp_value pp_get_n(pp_value obj, const u8 *key, u32 klen, int fold_case, int *twice) {
    pp_value found = pp_none();
    const u8 *p = pp_ws(obj.p);
    if (pp_at(p) != '{') return found;
    p = pp_ws(p + 1);
    while (pp_at(p) == '"') {
        const u8 *ks = p + 1;
        const u8 *q = pp_str_end(p);
        if (!q) return pp_none();
        u32 kn = (u32)(q - 1 - ks);
        p = pp_ws(q);
        if (pp_at(p) != ':') return pp_none();
        p = pp_ws(p + 1);
        if (kn == klen && pp_bytes_eq(ks, key, klen, fold_case)) {
            if (!twice) {
                found.p = p;
                return found;
            }
            if (pp_present(found)) {
                *twice = 1;
                return pp_none();
            }
            found.p = p;
        }
        p = pp_skip(p);
        if (!p) return pp_none();
        p = pp_ws(p);
        if (pp_at(p) != ',') break;
        p = pp_ws(p + 1);
    }
    return found;
}

/* obj.key, or absent. */
PP_FN pp_value pp_get(pp_value obj, const char *key) {
    return pp_get_n(obj, (const u8 *)key, pp_strlen(key), 0, 0);
}
/* obj.key with ASCII case folded (for scanner reports: `Severity` vs `severity`). */
PP_FN pp_value pp_get_ci(pp_value obj, const char *key) {
    return pp_get_n(obj, (const u8 *)key, pp_strlen(key), 1, 0);
}
/* obj.key with ASCII case folded, refusing ambiguity: when two keys match (`critical` and
 * `CRITICAL`) *twice is set and absent is returned, so a reader fails closed instead of
 * taking whichever came first. */
PP_FN pp_value pp_get_ci_unique(pp_value obj, const char *key, int *twice) {
    return pp_get_n(obj, (const u8 *)key, pp_strlen(key), 1, twice);
}
/* obj[<raw string>], for keys taken from the input (e.g. the environment). */
PP_FN pp_value pp_get_str(pp_value obj, pp_str key) { return pp_get_n(obj, key.s, key.n, 0, 0); }

PP_FN int pp_is_string(pp_value v) { return pp_at(v.p) == '"'; }
PP_FN int pp_is_object(pp_value v) { return pp_at(v.p) == '{'; }
PP_FN int pp_is_array(pp_value v) { return pp_at(v.p) == '['; }
PP_FN int pp_is_true(pp_value v) {
    if (!v.p || v.p + 4 > pp_end || !pp_bytes_eq(v.p, (const u8 *)"true", 4, 0)) return 0;
    int c = pp_at(v.p + 4);
    return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'));
}

/* A string value's raw contents; ok is 0 when v is not a string. */
PP_FN int pp_string(pp_value v, pp_str *out) {
    if (!pp_is_string(v)) return 0;
    const u8 *q = pp_str_end(v.p);
    if (!q) return 0;
    out->s = v.p + 1;
    out->n = (u32)(q - 1 - out->s);
    return 1;
}

PP_FN int pp_str_eq(pp_str s, const char *lit) {
    u32 n = pp_strlen(lit);
    return s.n == n && pp_bytes_eq(s.s, (const u8 *)lit, n, 0);
}
PP_FN int pp_str_eq_ci(pp_str s, const char *lit) {
    u32 n = pp_strlen(lit);
    return s.n == n && pp_bytes_eq(s.s, (const u8 *)lit, n, 1);
}

/* Array iteration: pp_first(arr) then pp_next(elem); absent at the end. */
PP_FN pp_value pp_first(pp_value arr) {
    if (!pp_is_array(arr)) return pp_none();
    const u8 *p = pp_ws(arr.p + 1);
    if (pp_at(p) == ']' || pp_at(p) == 0) return pp_none();
    pp_value v = {p};
    return v;
}
PP_FN pp_value pp_next(pp_value elem) {
    const u8 *p = pp_skip(elem.p);
    if (!p) return pp_none();
    p = pp_ws(p);
    if (pp_at(p) != ',') return pp_none();
    p = pp_ws(p + 1);
    if (pp_at(p) == 0) return pp_none();
    pp_value v = {p};
    return v;
}

/* Whether the string array `arr` contains exactly `s`. */
PP_FN int pp_array_has(pp_value arr, pp_str s) {
    for (pp_value e = pp_first(arr); pp_present(e); e = pp_next(e)) {
        pp_str x;
        if (pp_string(e, &x) && x.n == s.n && pp_bytes_eq(x.s, s.s, s.n, 0)) return 1;
    }
    return 0;
}

/* A non-negative JSON integer (no fraction or exponent) that fits in 63 bits. */
PP_FN int pp_uint(pp_value v, u64 *out) {
    const u8 *p = v.p;
    int c = pp_at(p);
    if (c < '0' || c > '9') return 0;
    u64 n = 0;
    while ((c = pp_at(p)) >= '0' && c <= '9') {
        if (n > 922337203685477580ull) return 0;
        n = n * 10 + (u64)(c - '0');
        p++;
    }
    c = pp_at(p);
    if (c == '.' || c == 'e' || c == 'E') return 0;
    *out = n;
    return 1;
}

/* ---- result writing ---- */

typedef struct {
    u8 *buf, *at, *cap;
    int overflow;        /* a write did not fit: the result is replaced by a fixed error */
    u32 violations;      /* how many were written */
    int facts_open;      /* 0: no fact written yet */
    u8 *facts, *facts_at; /* facts are buffered separately and appended at the end */
    u8 *facts_cap;
} pp_out;

PP_FN void pp_put_to(u8 **at, u8 *cap, int *overflow, const u8 *s, u32 n) {
    if (*overflow || (u32)(cap - *at) < n) { *overflow = 1; return; }
    __builtin_memcpy(*at, s, n);
    *at += n;
}
PP_FN void pp_put(pp_out *o, const char *s) { pp_put_to(&o->at, o->cap, &o->overflow, (const u8 *)s, pp_strlen(s)); }
PP_FN void pp_put_raw(pp_out *o, pp_str s) { pp_put_to(&o->at, o->cap, &o->overflow, s.s, s.n); }
/* The longest prefix of s, at most max bytes, that ends neither inside an escape
 * sequence nor inside a UTF-8 character, so it is still valid JSON string content. */
PP_FN pp_str pp_clip(pp_str s, u32 max) {
    if (s.n <= max) return s;
    u32 i = 0;
    while (i < s.n) {
        u32 step = 1;
        if (s.s[i] == '\\') step = (i + 1 < s.n && s.s[i + 1] == 'u') ? 6 : 2;
        else if (s.s[i] >= 0xF0) step = 4;
        else if (s.s[i] >= 0xE0) step = 3;
        else if (s.s[i] >= 0xC0) step = 2;
        if (i + step > max) break;
        i += step;
    }
    pp_str out = {s.s, i};
    return out;
}

/* Writes s, clipped to PP_ECHO_MAX bytes with "..." appended when clipped: for echoing
 * input values in messages and facts without letting them fill the result. */
#define PP_ECHO_MAX 200u
PP_FN void pp_put_echo(pp_out *o, pp_str s) {
    pp_str c = pp_clip(s, PP_ECHO_MAX);
    pp_put_raw(o, c);
    if (c.n < s.n) pp_put(o, "...");
}

PP_FN void pp_put_u64(pp_out *o, u64 n) {
    u8 tmp[20];
    u32 i = 20;
    do { tmp[--i] = (u8)('0' + n % 10); n /= 10; } while (n);
    pp_put_to(&o->at, o->cap, &o->overflow, tmp + i, 20 - i);
}

/* Starts a violation: writes `{"id":"<id>","msg":"`; write the message with pp_put /
 * pp_put_raw / pp_put_u64 (only text that is valid inside a JSON string), then call
 * pp_violation_end. */
PP_FN void pp_violation(pp_out *o, const char *id) {
    pp_put(o, o->violations ? ",{\"id\":\"" : "{\"id\":\"");
    pp_put(o, id);
    pp_put(o, "\",\"msg\":\"");
    o->violations++;
}
PP_FN void pp_violation_end(pp_out *o) { pp_put(o, "\"}"); }

PP_FN void pp_fact_key(pp_out *o, const char *key) {
    const char *sep = o->facts_open ? ",\"" : "\"";
    o->facts_open = 1;
    pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, (const u8 *)sep, pp_strlen(sep));
    pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, (const u8 *)key, pp_strlen(key));
    pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, (const u8 *)"\":", 2);
}
/* A string fact, clipped like pp_put_echo. */
PP_FN void pp_fact_string(pp_out *o, const char *key, pp_str s) {
    pp_str c = pp_clip(s, PP_ECHO_MAX);
    pp_fact_key(o, key);
    pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, (const u8 *)"\"", 1);
    pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, c.s, c.n);
    if (c.n < s.n) pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, (const u8 *)"...", 3);
    pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, (const u8 *)"\"", 1);
}
PP_FN void pp_fact_literal(pp_out *o, const char *key, const char *json) {
    pp_fact_key(o, key);
    pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, (const u8 *)json, pp_strlen(json));
}
PP_FN void pp_fact_bool(pp_out *o, const char *key, int b) { pp_fact_literal(o, key, b ? "true" : "false"); }
PP_FN void pp_fact_u64(pp_out *o, const char *key, u64 n) {
    u8 tmp[20];
    u32 i = 20;
    do { tmp[--i] = (u8)('0' + n % 10); n /= 10; } while (n);
    pp_fact_key(o, key);
    pp_put_to(&o->facts_at, o->facts_cap, &o->overflow, tmp + i, 20 - i);
}

PP_FN u64 pp_pack(const u8 *ptr, u32 len) { return ((u64)(u32)ptr << 32) | len; }

/* Bytes reserved for the violations and for the facts, each: fixed text plus echoes
 * clipped to PP_ECHO_MAX, for a handful of violations. Kept small so that, with
 * build.sh's 256 KiB initial memory, an ordinary check never grows memory (a grow, and
 * the shrink when the host reuses the sandbox slot, cost two mprotect calls). */
#define PP_RESULT_ROOM 16384u

static const char PP_NO_MEMORY[] =
    "{\"ok\":false,\"violations\":[{\"id\":\"plugin.no_memory\",\"msg\":\"the plugin could not allocate room for its result\"}],\"facts\":{}}";
static const char PP_OVERFLOW[] =
    "{\"ok\":false,\"violations\":[{\"id\":\"plugin.result_overflow\",\"msg\":\"the plugin's result did not fit its buffer\"}],\"facts\":{}}";

static void plugin_check(pp_value input, pp_out *out);

PP_EXPORT("check") u64 check(const u8 *ptr, i32 len) {
    pp_end = ptr + (len < 0 ? 0 : len);
    /* Echoed input values are clipped (pp_put_echo), so a result is fixed text plus a
     * bounded number of clipped values; a plugin that writes more than this gets the
     * fixed PP_OVERFLOW result instead (fails closed). */
    u32 room = PP_RESULT_ROOM;
    pp_out o = {0};
    o.buf = pp_alloc(room);
    o.facts = pp_alloc(room);
    if (!o.buf || !o.facts) return pp_pack((const u8 *)PP_NO_MEMORY, sizeof PP_NO_MEMORY - 1);
    o.at = o.buf + 32; /* room to prepend the verdict once it is known */
    o.cap = o.buf + room;
    o.facts_at = o.facts;
    o.facts_cap = o.facts + room;

    pp_value input = {ptr};
    plugin_check(input, &o);
    pp_put(&o, "],\"facts\":{");
    pp_put_to(&o.at, o.cap, &o.overflow, o.facts, (u32)(o.facts_at - o.facts));
    pp_put(&o, "}}");
    if (o.overflow) return pp_pack((const u8 *)PP_OVERFLOW, sizeof PP_OVERFLOW - 1);

    const char *head = o.violations ? "{\"ok\":false,\"violations\":[" : "{\"ok\":true,\"violations\":[";
    u32 hn = pp_strlen(head);
    u8 *start = o.buf + 32 - hn;
    __builtin_memcpy(start, head, hn);
    return pp_pack(start, (u32)(o.at - start));
}

#endif /* PROMO_PLUGIN_H */
