/* vuln-threshold: deny when a verified vulnerability scan of this artifact reports more
 * critical findings than the configured threshold; it reads only verified attestations,
 * never the request's unverified claims.
 *
 * Plugin for promo-policy, ABI v1 (plugins/ABI.md). Built by plugins/build.sh.
 *
 * Reads verified.attestations[] (what the engine proved; CONTRACT section 2), each
 * {predicateType, subjectMatches, predicate, ...}, and uses those that
 *   - have predicateType https://cosign.sigstore.dev/attestation/vuln/v1 (also its
 *     deprecated form without "https://") or https://in-toto.io/attestation/vulns/v0.1,
 *   - and have subjectMatches == true (a scan of some other artifact proves nothing).
 * From each scan's predicate.scanner.result it counts critical findings, reading the
 * first of these shapes that is present:
 *   1. result.summary.critical (a non-negative integer; key case-insensitive, so
 *      CRITICAL works too, but both at once is ambiguous): a summary some pipelines add,
 *      used as is;
 *   2. result as an array (in-toto vulns v0.1): one finding per element, critical when
 *      its severity (element.severity or element.vulnerability.severity) is the string
 *      "critical" or an array of {method, score} with a score "critical" or a numeric
 *      score >= 9.0 (CVSS v3 "critical");
 *   3. result.Results[].Vulnerabilities[].Severity == "CRITICAL" (Trivy's JSON report,
 *      as `trivy --format cosign-vuln` embeds it);
 *   4. result.matches[].vulnerability.severity == "Critical" (Grype's JSON report).
 * Severity strings compare case-insensitively. A scan in none of these shapes, or with
 * any part of its shape wrong (a count that is a float or a string, a severity that is
 * not one, a list that is not a list), is unreadable and fails closed. With several
 * scans, the worst count is used.
 *
 * Config:
 *   max_critical      most critical findings allowed (integer, default 0)
 *   require_scan_in   environments where a missing scan is itself a violation
 * Violations: vuln.critical, vuln.scan_missing, vuln.scan_unreadable, vuln.config.
 * Facts: scans (used), ignored (scan attestations for another subject), critical
 * (the worst count), max_critical.
 */
#include "promo_plugin.h"

static int is_scan_type(pp_str t) {
    return pp_str_eq(t, "https://cosign.sigstore.dev/attestation/vuln/v1") ||
           pp_str_eq(t, "cosign.sigstore.dev/attestation/vuln/v1") ||
           pp_str_eq(t, "https://in-toto.io/attestation/vulns/v0.1");
}

/* A CVSS-like score string >= 9.0: digits, optionally '.' and digits. */
static int score_is_critical(pp_str s) {
    u32 i = 0, whole = 0;
    if (s.n == 0) return 0;
    while (i < s.n && s.s[i] >= '0' && s.s[i] <= '9') {
        whole = whole * 10 + (u32)(s.s[i] - '0');
        if (whole > 1000) return 0;
        i++;
    }
    if (i == 0) return 0;
    if (i < s.n && s.s[i] == '.') {
        i++;
        while (i < s.n && s.s[i] >= '0' && s.s[i] <= '9') i++;
    }
    return i == s.n && whole >= 9;
}

/* A severity value: 1 when "critical", or [{method, score}] with a critical score; 0 when
 * not; -1 when it is neither a string nor such a list (unreadable, so fail closed). */
static int severity_is_critical(pp_value sev) {
    pp_str s;
    if (pp_string(sev, &s)) return pp_str_eq_ci(s, "critical");
    if (!pp_is_array(sev)) return -1;
    int critical = 0;
    for (pp_value e = pp_first(sev); pp_present(e); e = pp_next(e)) {
        pp_str score;
        if (!pp_string(pp_get(e, "score"), &score)) return -1;
        if (pp_str_eq_ci(score, "critical") || score_is_critical(score)) critical = 1;
    }
    return critical;
}

/* Critical findings in one scan result; -1 when anything it reads is not of the expected
 * shape: a summary count that is not a non-negative integer (a float, a string), a key
 * given twice in different cases, a list that is not a list, a severity that is not a
 * severity. Plugin input is hostile too: what cannot be read is never counted as 0. */
static i64 count_critical(pp_value result) {
    u64 n = 0;
    int twice = 0;
    if (pp_is_object(result)) {
        pp_value summary = pp_get_ci_unique(result, "summary", &twice);
        if (twice) return -1;
        if (pp_present(summary)) {
            u64 c;
            pp_value count = pp_get_ci_unique(summary, "critical", &twice);
            if (twice || !pp_uint(count, &c)) return -1;
            return (i64)c;
        }
        pp_value results = pp_get(result, "Results");
        if (pp_present(results)) {
            if (!pp_is_array(results)) return -1;
            for (pp_value r = pp_first(results); pp_present(r); r = pp_next(r)) {
                pp_value vulns = pp_get(r, "Vulnerabilities");
                if (!pp_present(vulns)) continue; /* Trivy omits the list when clean */
                if (!pp_is_array(vulns)) return -1;
                for (pp_value v = pp_first(vulns); pp_present(v); v = pp_next(v)) {
                    pp_str sev;
                    if (!pp_string(pp_get(v, "Severity"), &sev)) return -1;
                    if (pp_str_eq_ci(sev, "critical")) n++;
                }
            }
            return (i64)n;
        }
        pp_value matches = pp_get(result, "matches");
        if (pp_present(matches)) {
            if (!pp_is_array(matches)) return -1;
            for (pp_value m = pp_first(matches); pp_present(m); m = pp_next(m)) {
                pp_str sev;
                if (!pp_string(pp_get(pp_get(m, "vulnerability"), "severity"), &sev)) return -1;
                if (pp_str_eq_ci(sev, "critical")) n++;
            }
            return (i64)n;
        }
        return -1;
    }
    if (pp_is_array(result)) {
        for (pp_value f = pp_first(result); pp_present(f); f = pp_next(f)) {
            pp_value sev = pp_get(f, "severity");
            if (!pp_present(sev)) sev = pp_get(pp_get(f, "vulnerability"), "severity");
            int critical = severity_is_critical(sev);
            if (critical < 0) return -1;
            n += (u64)critical;
        }
        return (i64)n;
    }
    return -1;
}

static void plugin_check(pp_value input, pp_out *out) {
    pp_value config = pp_get(input, "config");
    pp_str env = {0, 0};
    pp_string(pp_get(input, "environment"), &env);

    u64 max_critical = 0;
    pp_value max_v = pp_get(config, "max_critical");
    if (pp_present(max_v) && !pp_uint(max_v, &max_critical)) {
        pp_violation(out, "vuln.config");
        pp_put(out, "config.max_critical must be a non-negative integer");
        pp_violation_end(out);
        return;
    }

    u64 scans = 0, ignored = 0, unreadable = 0, worst = 0;
    pp_value atts = pp_get(pp_get(input, "verified"), "attestations");
    for (pp_value a = pp_first(atts); pp_present(a); a = pp_next(a)) {
        pp_str type;
        if (!pp_string(pp_get(a, "predicateType"), &type) || !is_scan_type(type)) continue;
        if (!pp_is_true(pp_get(a, "subjectMatches"))) { ignored++; continue; }
        i64 c = count_critical(pp_get(pp_get(pp_get(a, "predicate"), "scanner"), "result"));
        if (c < 0) { unreadable++; continue; }
        scans++;
        if ((u64)c > worst) worst = (u64)c;
    }

    pp_fact_u64(out, "scans", scans);
    pp_fact_u64(out, "ignored", ignored);
    pp_fact_u64(out, "critical", worst);
    pp_fact_u64(out, "max_critical", max_critical);

    if (unreadable > 0) {
        pp_violation(out, "vuln.scan_unreadable");
        pp_put_u64(out, unreadable);
        pp_put(out, " verified vulnerability scan(s) have a scanner.result this plugin cannot read "
                    "(expected a summary, an in-toto vulns list, or a Trivy or Grype report)");
        pp_violation_end(out);
    }
    if (scans + unreadable == 0) {
        if (env.n > 0 && pp_array_has(pp_get(config, "require_scan_in"), env)) {
            pp_violation(out, "vuln.scan_missing");
            pp_put(out, "no verified vulnerability scan of this artifact; `");
            pp_put_echo(out, env);
            pp_put(out, "` requires one (cosign vuln/v1 or in-toto vulns/v0.1, signed by a trusted key");
            pp_put(out, ignored ? ", for this artifact's digest)" : ")");
            pp_violation_end(out);
        }
        return;
    }
    if (worst > max_critical) {
        pp_violation(out, "vuln.critical");
        pp_put(out, "the verified vulnerability scan reports ");
        pp_put_u64(out, worst);
        pp_put(out, " critical finding(s); at most ");
        pp_put_u64(out, max_critical);
        pp_put(out, " may be promoted to `");
        pp_put_echo(out, env);
        pp_put(out, "`");
        pp_violation_end(out);
    }
}
