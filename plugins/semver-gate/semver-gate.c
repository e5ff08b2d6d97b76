/* semver-gate: the artifact's version is valid semver 2.0.0, strictly newer than the
 * version running in the target environment, and not a pre-release where the config
 * forbids one; it never reads anything but the ABI v1 input.
 *
 * Plugin for promo-policy, ABI v1 (plugins/ABI.md). Built by plugins/build.sh.
 *
 * Reads:
 *   request.artifact.version     the version being promoted, e.g. "1.42.0"
 *   request.currentVersion       optional: the version running in the target environment
 *                                now; absent or null = a first deployment, no comparison
 *   environment                  the target environment
 *   config.deny_prerelease_in    environments no pre-release may enter, e.g. ["prod"]
 * Violations:
 *   semver.missing          request.artifact.version is absent or not a string
 *   semver.invalid          it is not semver 2.0.0 (MAJOR.MINOR.PATCH[-PRE][+BUILD])
 *   semver.prerelease       a pre-release into an environment in deny_prerelease_in
 *   semver.current_invalid  currentVersion is present but not semver (cannot compare)
 *   semver.not_newer        the version does not have higher precedence than currentVersion
 * Facts: version, prerelease, currentVersion (when given), comparison
 * ("newer" | "same" | "older", when compared).
 *
 * Precedence follows semver 2.0.0 section 11: numeric identifiers compare as numbers
 * (of any length: compared by length, then digit by digit, as leading zeros are not
 * allowed), a pre-release has lower precedence than its release, and build metadata is
 * ignored, so 1.2.3+b is not newer than 1.2.3+a. A leading "v" is not semver.
 */
#include "promo_plugin.h"

typedef struct {
    pp_str major, minor, patch; /* digits, no leading zeros */
    pp_str pre;                 /* dot-separated identifiers, n == 0 when none */
    pp_str build;               /* n == 0 when none */
} semver;

static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_ident_char(int c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-';
}

/* A numeric identifier at s[*i]: digits, no leading zero unless it is "0". */
static int parse_numeric(pp_str s, u32 *i, pp_str *out) {
    u32 start = *i;
    while (*i < s.n && is_digit(s.s[*i])) (*i)++;
    u32 n = *i - start;
    if (n == 0 || (n > 1 && s.s[start] == '0')) return 0;
    out->s = s.s + start;
    out->n = n;
    return 1;
}

/* Dot-separated identifiers from s[*i] up to `stop` (or the end): each non-empty,
 * [0-9A-Za-z-]; with no_leading_zeros, all-digit identifiers may not start with 0. */
static int parse_idents(pp_str s, u32 *i, int stop, int no_leading_zeros, pp_str *out) {
    u32 start = *i;
    for (;;) {
        u32 id_start = *i;
        int all_digits = 1;
        while (*i < s.n && is_ident_char(s.s[*i])) {
            if (!is_digit(s.s[*i])) all_digits = 0;
            (*i)++;
        }
        u32 n = *i - id_start;
        if (n == 0) return 0;
        if (no_leading_zeros && all_digits && n > 1 && s.s[id_start] == '0') return 0;
        if (*i < s.n && s.s[*i] == '.') { (*i)++; continue; }
        break;
    }
    if (*i < s.n && s.s[*i] != stop) return 0;
    out->s = s.s + start;
    out->n = *i - start;
    return 1;
}

static int parse_semver(pp_str s, semver *v) {
    u32 i = 0;
    pp_str empty = {s.s, 0};
    v->pre = empty;
    v->build = empty;
    if (!parse_numeric(s, &i, &v->major) || i >= s.n || s.s[i++] != '.') return 0;
    if (!parse_numeric(s, &i, &v->minor) || i >= s.n || s.s[i++] != '.') return 0;
    if (!parse_numeric(s, &i, &v->patch)) return 0;
    if (i < s.n && s.s[i] == '-') {
        i++;
        if (!parse_idents(s, &i, '+', 1, &v->pre)) return 0;
    }
    if (i < s.n && s.s[i] == '+') {
        i++;
        if (!parse_idents(s, &i, 0, 0, &v->build)) return 0;
    }
    return i == s.n;
}

static int cmp_bytes(const u8 *a, u32 an, const u8 *b, u32 bn) {
    u32 n = an < bn ? an : bn;
    for (u32 i = 0; i < n; i++)
        if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
    return an == bn ? 0 : (an < bn ? -1 : 1);
}

/* Numbers without leading zeros: the longer is larger; equal lengths compare as text. */
static int cmp_numeric(const u8 *a, u32 an, const u8 *b, u32 bn) {
    if (an != bn) return an < bn ? -1 : 1;
    return cmp_bytes(a, an, b, bn);
}

static int all_digits(const u8 *s, u32 n) {
    for (u32 i = 0; i < n; i++)
        if (!is_digit(s[i])) return 0;
    return n > 0;
}

/* Pre-release precedence (section 11.4); both non-empty. */
static int cmp_pre(pp_str a, pp_str b) {
    u32 i = 0, j = 0;
    for (;;) {
        if (i >= a.n && j >= b.n) return 0;
        if (i >= a.n) return -1; /* fewer identifiers: lower */
        if (j >= b.n) return 1;
        u32 ai = i, bj = j;
        while (i < a.n && a.s[i] != '.') i++;
        while (j < b.n && b.s[j] != '.') j++;
        const u8 *x = a.s + ai, *y = b.s + bj;
        u32 xn = i - ai, yn = j - bj;
        int xd = all_digits(x, xn), yd = all_digits(y, yn);
        int c;
        if (xd && yd) c = cmp_numeric(x, xn, y, yn);
        else if (xd) c = -1; /* numeric identifiers are lower than alphanumeric ones */
        else if (yd) c = 1;
        else c = cmp_bytes(x, xn, y, yn);
        if (c) return c;
        if (i < a.n) i++; /* skip the dots */
        if (j < b.n) j++;
    }
}

static int cmp_semver(const semver *a, const semver *b) {
    int c = cmp_numeric(a->major.s, a->major.n, b->major.s, b->major.n);
    if (!c) c = cmp_numeric(a->minor.s, a->minor.n, b->minor.s, b->minor.n);
    if (!c) c = cmp_numeric(a->patch.s, a->patch.n, b->patch.s, b->patch.n);
    if (c) return c;
    if (a->pre.n == 0 && b->pre.n == 0) return 0;
    if (a->pre.n == 0) return 1; /* a release outranks its pre-releases */
    if (b->pre.n == 0) return -1;
    return cmp_pre(a->pre, b->pre);
}

static void plugin_check(pp_value input, pp_out *out) {
    pp_value request = pp_get(input, "request");
    pp_value config = pp_get(input, "config");
    pp_str env = {0, 0};
    pp_string(pp_get(input, "environment"), &env);

    pp_str version;
    if (!pp_string(pp_get(pp_get(request, "artifact"), "version"), &version) || version.n == 0) {
        pp_violation(out, "semver.missing");
        pp_put(out, "request.artifact.version is required to promote to `");
        pp_put_echo(out, env);
        pp_put(out, "`, so its version can be checked");
        pp_violation_end(out);
        return;
    }
    pp_fact_string(out, "version", version);

    semver v;
    if (!parse_semver(version, &v)) {
        pp_violation(out, "semver.invalid");
        pp_put(out, "artifact version `");
        pp_put_echo(out, version);
        pp_put(out, "` is not a semantic version (semver 2.0.0: MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD], no leading zeros, no `v` prefix)");
        pp_violation_end(out);
        return;
    }
    int prerelease = v.pre.n > 0;
    pp_fact_bool(out, "prerelease", prerelease);

    if (prerelease && env.n > 0 && pp_array_has(pp_get(config, "deny_prerelease_in"), env)) {
        pp_violation(out, "semver.prerelease");
        pp_put(out, "pre-release `");
        pp_put_echo(out, version);
        pp_put(out, "` may not be promoted to `");
        pp_put_echo(out, env);
        pp_put(out, "`; promote a release version");
        pp_violation_end(out);
    }

    pp_value current_v = pp_get(request, "currentVersion");
    pp_str current;
    if (!pp_present(current_v) || pp_at(current_v.p) == 'n') return; /* absent or null */
    if (!pp_string(current_v, &current)) {
        pp_violation(out, "semver.current_invalid");
        pp_put(out, "request.currentVersion must be a string (the version running in `");
        pp_put_echo(out, env);
        pp_put(out, "`)");
        pp_violation_end(out);
        return;
    }
    pp_fact_string(out, "currentVersion", current);
    semver cur;
    if (!parse_semver(current, &cur)) {
        pp_violation(out, "semver.current_invalid");
        pp_put(out, "the version running in `");
        pp_put_echo(out, env);
        pp_put(out, "`, `");
        pp_put_echo(out, current);
        pp_put(out, "`, is not a semantic version, so `");
        pp_put_echo(out, version);
        pp_put(out, "` cannot be shown to be newer");
        pp_violation_end(out);
        return;
    }
    int c = cmp_semver(&v, &cur);
    pp_fact_literal(out, "comparison", c > 0 ? "\"newer\"" : (c == 0 ? "\"same\"" : "\"older\""));
    if (c <= 0) {
        pp_violation(out, "semver.not_newer");
        pp_put(out, "version `");
        pp_put_echo(out, version);
        pp_put(out, c == 0 ? "` has the same precedence as `" : "` is older than `");
        pp_put_echo(out, current);
        pp_put(out, "`, which is running in `");
        pp_put_echo(out, env);
        pp_put(out, "`; a promotion must move to a strictly newer version");
        pp_violation_end(out);
    }
}
