/* The launch reader's hot path in C: launches in their plainest form routed straight into the
 * learner commands' JSON, with no Python object per launch.
 *
 * streams/stages/ingest.py's `route_launches` stays the one definition of the rules (it calls the
 * contract's model through streams/domain/launch_decoder.py). This module takes only launches it
 * can prove it reads exactly as that code does, and hands every other record back to it, in
 * order, through the `slow` callback:
 *
 *   - the value is ASCII without a backslash, a control character (but JSON's whitespace between
 *     tokens) or DEL, at most 4 KiB, one flat JSON object (no '{' but the first, no '[');
 *   - every member's value is a string, null, true, false or a plain number (no exponent);
 *     the launch's own fields are strings (content_type may be null), each given once;
 *   - the four ids are 1-256 characters without '/', the event id is not empty;
 *   - launched_at is YYYY-MM-DDTHH:MM:SS[.f{1,6}](Z|+hh:mm|-hh:mm), a real instant between the
 *     years 1900 and 2500 in UTC;
 *   - tracking (spaces trimmed, lower case) is tracked, none or none_resource, launched_by is
 *     learner or admin;
 *   - the launch is not near the future check's limit (within 2 ms of it or past it: that check
 *     is Python's call).
 *
 * For such a launch the module writes exactly the row `route_launches` builds, as orjson writes
 * it, to the launch's learner partition (CRC-32 of "tenant/learner", as
 * streams/domain/partitioning.py), and cuts each partition's rows into commands by the same
 * size estimate (`_row_size`, `chunks_by_size`). tests/unit/test_native_router.py compares the
 * two byte for byte over the dataset, the decoder's hostile inputs and random mutations.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MAX_RAW 4096
#define MAX_ID 256
#define ROW_OVERHEAD 96 /* `_row_size`'s constant */

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_update(uint32_t c, const char *p, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) c = crc_table[(c ^ (unsigned char)p[i]) & 0xff] ^ (c >> 8);
    return c;
}

/* -- one launch ------------------------------------------------------------------------------ */

typedef struct {
    const char *p;
    Py_ssize_t n;
    int set;  /* 1: a string, 2: null */
} Field;

enum { EVENT_ID, TENANT_ID, LEARNER_ID, ELEMENT_ID, ATTEMPT_ID, LAUNCHED_AT, CONTENT_TYPE,
       TRACKING, LAUNCHED_BY, FIELDS };
static const char *FIELD_NAMES[FIELDS] = {"event_id", "tenant_id", "learner_id", "element_id",
                                          "attempt_id", "launched_at", "content_type",
                                          "tracking", "launched_by"};

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* The bytes every accepted value is made of; 0 means: Python's call. */
static int plain_bytes(const char *s, Py_ssize_t n) {
    int braces = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '{') braces++;
        else if (c == '[' || c == '\\' || c >= 0x7f) return 0;
        else if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') return 0;
    }
    return braces == 1;
}

static Py_ssize_t skip_ws(const char *s, Py_ssize_t i, Py_ssize_t n) {
    while (i < n && is_ws(s[i])) i++;
    return i;
}

/* A string from s[i] == '"': its span; the index after its closing quote, or -1. */
static Py_ssize_t read_string(const char *s, Py_ssize_t i, Py_ssize_t n, Field *out) {
    Py_ssize_t start = ++i;
    while (i < n && s[i] != '"') {
        if ((unsigned char)s[i] < 0x20) return -1; /* a raw control character: invalid JSON */
        i++;
    }
    if (i >= n) return -1;
    out->p = s + start;
    out->n = i - start;
    out->set = 1;
    return i + 1;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* A plain number (-?(0|[1-9][0-9]{0,17})(\.[0-9]{1,17})?) followed by a delimiter. */
static Py_ssize_t read_number(const char *s, Py_ssize_t i, Py_ssize_t n) {
    if (i < n && s[i] == '-') i++;
    if (i >= n || !is_digit(s[i])) return -1;
    Py_ssize_t start = i;
    if (s[i] == '0') i++;
    else while (i < n && is_digit(s[i])) i++;
    if (i - start > 18) return -1;
    if (i < n && s[i] == '.') {
        Py_ssize_t f = ++i;
        while (i < n && is_digit(s[i])) i++;
        if (i == f || i - f > 17) return -1;
    }
    if (i < n && (s[i] == ',' || s[i] == '}' || is_ws(s[i]))) return i;
    return -1;
}

static Py_ssize_t read_literal(const char *s, Py_ssize_t i, Py_ssize_t n, const char *word) {
    size_t len = strlen(word);
    if ((size_t)(n - i) < len || memcmp(s + i, word, len) != 0) return -1;
    return i + (Py_ssize_t)len;
}

static int parse_object(const char *s, Py_ssize_t n, Field *fields) {
    memset(fields, 0, sizeof(Field) * FIELDS);
    Py_ssize_t i = skip_ws(s, 0, n);
    if (i >= n || s[i] != '{') return 0;
    i = skip_ws(s, i + 1, n);
    if (i < n && s[i] == '}') return 0; /* no fields: Python's call (it refuses it) */
    for (;;) {
        if (i >= n || s[i] != '"') return 0;
        Field key;
        i = read_string(s, i, n, &key);
        if (i < 0) return 0;
        i = skip_ws(s, i, n);
        if (i >= n || s[i] != ':') return 0;
        i = skip_ws(s, i + 1, n);
        if (i >= n) return 0;
        Field value = {NULL, 0, 0};
        if (s[i] == '"') i = read_string(s, i, n, &value);
        else if (s[i] == 'n') {
            i = read_literal(s, i, n, "null");
            value.set = 2;
        } else if (s[i] == 't') i = read_literal(s, i, n, "true");
        else if (s[i] == 'f') i = read_literal(s, i, n, "false");
        else i = read_number(s, i, n);
        if (i < 0) return 0;
        for (int k = 0; k < FIELDS; k++) {
            if ((Py_ssize_t)strlen(FIELD_NAMES[k]) == key.n &&
                memcmp(FIELD_NAMES[k], key.p, key.n) == 0) {
                if (fields[k].set) return 0; /* given twice */
                if (value.set == 1 || (value.set == 2 && k == CONTENT_TYPE)) fields[k] = value;
                else return 0; /* not a string where one belongs */
                break;
            }
        }
        i = skip_ws(s, i, n);
        if (i >= n) return 0;
        if (s[i] == '}') {
            i++;
            break;
        }
        if (s[i] != ',') return 0;
        i = skip_ws(s, i + 1, n);
    }
    if (i != n) return 0; /* anything after the object (even whitespace): Python's call */
    for (int k = EVENT_ID; k <= LAUNCHED_AT; k++)
        if (!fields[k].set) return 0;
    return 1;
}

static int valid_id(const Field *f) {
    if (f->n < 1 || f->n > MAX_ID) return 0;
    return memchr(f->p, '/', f->n) == NULL;
}

/* `text` with spaces trimmed and in lower case equals `word`. */
static int trimmed_equals(const Field *f, const char *word) {
    Py_ssize_t a = 0, b = f->n;
    while (a < b && f->p[a] == ' ') a++;
    while (b > a && f->p[b - 1] == ' ') b--;
    size_t len = strlen(word);
    if ((size_t)(b - a) != len) return 0;
    for (size_t k = 0; k < len; k++) {
        char c = f->p[a + k];
        if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
        if (c != word[k]) return 0;
    }
    return 1;
}

static int field_is(const Field *f, const char *word) {
    return (size_t)f->n == strlen(word) && memcmp(f->p, word, f->n) == 0;
}

/* -- instants -------------------------------------------------------------------------------- */

static int digits(const char *p, int n, int *out) {
    int v = 0;
    for (int k = 0; k < n; k++) {
        if (!is_digit(p[k])) return 0;
        v = v * 10 + (p[k] - '0');
    }
    *out = v;
    return 1;
}

static int leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

static int days_in_month(int y, int m) {
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : days[m - 1];
}

/* Days from 1970-01-01 (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int64_t year_of_days(int64_t z) {
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t m = mp + (mp < 10 ? 3 : -9);
    return yoe + era * 400 + (m <= 2);
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

#define ISO_MAX 40

/* An instant in the common form: its text as Python's isoformat() writes it (into `iso`, of
 * ISO_MAX bytes) and its UTC microseconds since 1970; 0 when it is not one this module reads. */
static int parse_instant(const Field *f, char *iso, int *iso_len, int64_t *utc_us) {
    const char *p = f->p;
    Py_ssize_t n = f->n;
    int year, month, day, hour, minute, second, micro = 0, offset_min = 0;
    if (n < 20 || p[4] != '-' || p[7] != '-' || p[10] != 'T' || p[13] != ':' || p[16] != ':')
        return 0;
    if (!digits(p, 4, &year) || !digits(p + 5, 2, &month) || !digits(p + 8, 2, &day) ||
        !digits(p + 11, 2, &hour) || !digits(p + 14, 2, &minute) || !digits(p + 17, 2, &second))
        return 0;
    Py_ssize_t i = 19;
    if (p[i] == '.') {
        Py_ssize_t start = ++i;
        while (i < n && is_digit(p[i])) i++;
        int count = (int)(i - start);
        if (count < 1 || count > 6) return 0;
        digits(p + start, count, &micro);
        for (int k = count; k < 6; k++) micro *= 10;
    }
    if (i >= n) return 0;
    if (p[i] == 'Z') {
        if (i + 1 != n) return 0;
    } else if (p[i] == '+' || p[i] == '-') {
        int oh, om;
        if (n - i != 6 || p[i + 3] != ':' || !digits(p + i + 1, 2, &oh) ||
            !digits(p + i + 4, 2, &om) || oh > 23 || om > 59)
            return 0;
        offset_min = (oh * 60 + om) * (p[i] == '-' ? -1 : 1);
    } else return 0;
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > days_in_month(year, month) ||
        hour > 23 || minute > 59 || second > 59)
        return 0;
    int64_t local = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    int64_t utc = local - (int64_t)offset_min * 60;
    int64_t utc_year = year_of_days(floor_div(utc, 86400));
    if (utc_year < 1900 || utc_year >= 2500) return 0;
    *utc_us = utc * 1000000 + micro;
    int len = snprintf(iso, ISO_MAX, "%04d-%02d-%02dT%02d:%02d:%02d", year, month, day, hour, minute,
                       second);
    if (micro) len += snprintf(iso + len, ISO_MAX - len, ".%06d", micro);
    int off = offset_min < 0 ? -offset_min : offset_min;
    len += snprintf(iso + len, ISO_MAX - len, "%c%02d:%02d", offset_min < 0 ? '-' : '+', off / 60,
                    off % 60);
    *iso_len = len;
    return 1;
}

/* -- rows, per partition --------------------------------------------------------------------- */

typedef struct {
    char *bytes;           /* the partition's rows, one after the other */
    Py_ssize_t used, cap;
    Py_ssize_t *ends;      /* where each row ends in `bytes` */
    Py_ssize_t *sizes;     /* each row's `_row_size` */
    Py_ssize_t rows, rows_cap;
    int seen;
} Rows;

typedef struct {
    Rows *parts;
    int partitions;
    int *order; /* partitions in the order their first row came */
    int ordered;
} Routing;

static int reserve(Rows *r, Py_ssize_t more) {
    if (r->used + more > r->cap) {
        Py_ssize_t cap = r->cap ? r->cap : 4096;
        while (cap < r->used + more) cap *= 2;
        char *bytes = PyMem_Realloc(r->bytes, cap);
        if (!bytes) return 0;
        r->bytes = bytes;
        r->cap = cap;
    }
    if (r->rows == r->rows_cap) {
        Py_ssize_t cap = r->rows_cap ? r->rows_cap * 2 : 64;
        Py_ssize_t *ends = PyMem_Realloc(r->ends, cap * sizeof(Py_ssize_t));
        if (!ends) return 0;
        r->ends = ends;
        Py_ssize_t *sizes = PyMem_Realloc(r->sizes, cap * sizeof(Py_ssize_t));
        if (!sizes) return 0;
        r->sizes = sizes;
        r->rows_cap = cap;
    }
    return 1;
}

static Rows *rows_of(Routing *routing, int partition) {
    Rows *r = &routing->parts[partition];
    if (!r->seen) {
        r->seen = 1;
        routing->order[routing->ordered++] = partition;
    }
    return r;
}

static void put(Rows *r, const char *p, Py_ssize_t n) {
    memcpy(r->bytes + r->used, p, n);
    r->used += n;
}

static void put_string(Rows *r, const Field *f) {
    r->bytes[r->used++] = '"';
    put(r, f->p, f->n);
    r->bytes[r->used++] = '"';
}

static void put_int(Rows *r, long long v) {
    r->used += snprintf(r->bytes + r->used, 24, "%lld", v);
}

static void end_row(Rows *r, Py_ssize_t size) {
    r->ends[r->rows] = r->used;
    r->sizes[r->rows] = size;
    r->rows++;
}

/* -- the module's function ------------------------------------------------------------------- */

static PyObject *S_value, *S_partition, *S_offset, *S_timestamp;

static int long_attr(PyObject *record, PyObject *name, long long *out) {
    PyObject *v = PyObject_GetAttr(record, name);
    if (!v) return -1;
    /* exactly an int: a bool (or any subclass) is Python's call, which orjson writes its way */
    int ok = PyLong_CheckExact(v);
    if (ok) {
        int overflow = 0;
        *out = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (*out == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            ok = 0;
        }
    }
    Py_DECREF(v);
    return ok;
}

/* 1: routed here; 0: Python's call; -1: an error. */
static int route_one(Routing *routing, PyObject *record, Py_ssize_t raw_inline_max,
                     long long *tracked, long long *untracked) {
    PyObject *value = PyObject_GetAttr(record, S_value);
    if (!value) return -1;
    if (!PyBytes_Check(value)) {
        Py_DECREF(value);
        return 0;
    }
    const char *s = PyBytes_AS_STRING(value);
    Py_ssize_t n = PyBytes_GET_SIZE(value);
    Field f[FIELDS];
    int result = 0;
    if (n > MAX_RAW || !plain_bytes(s, n) || !parse_object(s, n, f)) goto done;
    if (f[EVENT_ID].n < 1 || !valid_id(&f[TENANT_ID]) || !valid_id(&f[LEARNER_ID]) ||
        !valid_id(&f[ELEMENT_ID]) || !valid_id(&f[ATTEMPT_ID]))
        goto done;
    char iso[ISO_MAX];
    int iso_len;
    int64_t utc_us;
    if (!parse_instant(&f[LAUNCHED_AT], iso, &iso_len, &utc_us)) goto done;
    int tracking_none = 0;
    if (f[TRACKING].set) {
        if (trimmed_equals(&f[TRACKING], "none") || trimmed_equals(&f[TRACKING], "none_resource"))
            tracking_none = 1;
        else if (!trimmed_equals(&f[TRACKING], "tracked")) goto done;
    }
    int by_learner = 1;
    if (f[LAUNCHED_BY].set) {
        if (field_is(&f[LAUNCHED_BY], "admin")) by_learner = 0;
        else if (!field_is(&f[LAUNCHED_BY], "learner")) goto done;
    }
    int scorm = f[CONTENT_TYPE].set == 1 && trimmed_equals(&f[CONTENT_TYPE], "scorm");
    if (!by_learner || (!scorm && tracking_none)) {
        /* untracked: dropped before the future check, as route_launches does */
        (*untracked)++;
        result = 1;
        goto done;
    }
    long long timestamp, source_partition, offset;
    int got = long_attr(record, S_timestamp, &timestamp);
    if (got <= 0) { result = got; goto done; }
    /* the future check is Python's within 2 ms of its limit, and past it (the float
     * comparison that decides whether to check is Python's) */
    if (timestamp < -((long long)1 << 50) || timestamp > ((long long)1 << 50) ||
        utc_us > (timestamp + 3600000 - 2) * 1000)
        goto done;
    got = long_attr(record, S_partition, &source_partition);
    if (got <= 0) { result = got; goto done; }
    got = long_attr(record, S_offset, &offset);
    if (got <= 0) { result = got; goto done; }

    uint32_t c = crc_update(0xFFFFFFFFu, f[TENANT_ID].p, f[TENANT_ID].n);
    c = crc_update(c, "/", 1);
    c = crc_update(c, f[LEARNER_ID].p, f[LEARNER_ID].n) ^ 0xFFFFFFFFu;
    Rows *r = rows_of(routing, (int)(c % (uint32_t)routing->partitions));
    int inline_raw = n <= raw_inline_max;
    /* the row's bytes at most: the ids and the instant quoted, 3 numbers, the raw escaped */
    Py_ssize_t most = 16 + f[TENANT_ID].n + f[LEARNER_ID].n + f[ELEMENT_ID].n +
                      f[ATTEMPT_ID].n + iso_len + 3 * 24 + (inline_raw ? 2 * n + 2 : 4) + 8;
    if (!reserve(r, most)) {
        PyErr_NoMemory();
        result = -1;
        goto done;
    }
    r->bytes[r->used++] = '[';
    put_string(r, &f[TENANT_ID]);
    r->bytes[r->used++] = ',';
    put_string(r, &f[LEARNER_ID]);
    r->bytes[r->used++] = ',';
    put_string(r, &f[ELEMENT_ID]);
    r->bytes[r->used++] = ',';
    put_string(r, &f[ATTEMPT_ID]);
    r->bytes[r->used++] = ',';
    r->bytes[r->used++] = '"';
    put(r, iso, iso_len);
    r->bytes[r->used++] = '"';
    r->bytes[r->used++] = ',';
    put_int(r, source_partition);
    r->bytes[r->used++] = ',';
    put_int(r, offset);
    r->bytes[r->used++] = ',';
    if (inline_raw) {
        r->bytes[r->used++] = '"';
        for (Py_ssize_t k = 0; k < n; k++) {
            char ch = s[k];
            if (ch == '"') { r->bytes[r->used++] = '\\'; r->bytes[r->used++] = '"'; }
            else if (ch == '\n') { r->bytes[r->used++] = '\\'; r->bytes[r->used++] = 'n'; }
            else if (ch == '\r') { r->bytes[r->used++] = '\\'; r->bytes[r->used++] = 'r'; }
            else if (ch == '\t') { r->bytes[r->used++] = '\\'; r->bytes[r->used++] = 't'; }
            else r->bytes[r->used++] = ch;
        }
        r->bytes[r->used++] = '"';
    } else put(r, "null", 4);
    r->bytes[r->used++] = ',';
    put_int(r, timestamp);
    r->bytes[r->used++] = ']';
    end_row(r, ROW_OVERHEAD + f[TENANT_ID].n + f[LEARNER_ID].n + f[ELEMENT_ID].n +
                   f[ATTEMPT_ID].n + iso_len + (inline_raw ? n : 0));
    (*tracked)++;
    result = 1;
done:
    Py_DECREF(value);
    return result;
}

/* Rows the slow path built: a list of (partition, row bytes, size). */
static int add_slow_rows(Routing *routing, PyObject *rows) {
    PyObject *seq = PySequence_Fast(rows, "slow() must return a sequence");
    if (!seq) return 0;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t k = 0; k < count; k++) {
        int partition;
        const char *bytes;
        Py_ssize_t len, size;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, k), "iy#n", &partition, &bytes, &len,
                              &size)) {
            Py_DECREF(seq);
            return 0;
        }
        if (partition < 0 || partition >= routing->partitions) {
            PyErr_SetString(PyExc_ValueError, "slow() gave a partition out of range");
            Py_DECREF(seq);
            return 0;
        }
        Rows *r = rows_of(routing, partition);
        if (!reserve(r, len)) {
            PyErr_NoMemory();
            Py_DECREF(seq);
            return 0;
        }
        put(r, bytes, len);
        end_row(r, size);
    }
    Py_DECREF(seq);
    return 1;
}

/* One partition's rows cut into commands (`chunks_by_size`), appended to `out`. */
static int commands_of(Rows *r, int partition, Py_ssize_t limit, const char *prefix,
                       Py_ssize_t prefix_len, const char *suffix, Py_ssize_t suffix_len,
                       PyObject *out) {
    Py_ssize_t first = 0;
    while (first < r->rows) {
        Py_ssize_t last = first, size = r->sizes[first];
        while (last + 1 < r->rows && r->sizes[last + 1] <= limit - size) size += r->sizes[++last];
        Py_ssize_t start = first ? r->ends[first - 1] : 0, end = r->ends[last];
        Py_ssize_t commas = last - first;
        PyObject *command =
            PyBytes_FromStringAndSize(NULL, prefix_len + (end - start) + commas + suffix_len);
        if (!command) return 0;
        char *w = PyBytes_AS_STRING(command);
        memcpy(w, prefix, prefix_len);
        w += prefix_len;
        for (Py_ssize_t k = first; k <= last; k++) {
            Py_ssize_t row_start = k ? r->ends[k - 1] : 0;
            if (k > first) *w++ = ',';
            memcpy(w, r->bytes + row_start, r->ends[k] - row_start);
            w += r->ends[k] - row_start;
        }
        memcpy(w, suffix, suffix_len);
        PyObject *item = Py_BuildValue("(iN)", partition, command);
        if (!item || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            return 0;
        }
        Py_DECREF(item);
        first = last + 1;
    }
    return 1;
}

static void free_routing(Routing *routing) {
    if (routing->parts) {
        for (int k = 0; k < routing->partitions; k++) {
            PyMem_Free(routing->parts[k].bytes);
            PyMem_Free(routing->parts[k].ends);
            PyMem_Free(routing->parts[k].sizes);
        }
    }
    PyMem_Free(routing->parts);
    PyMem_Free(routing->order);
}

PyDoc_STRVAR(route_doc,
"route(records, partitions, raw_inline_max, command_max_bytes, prefix, suffix, slow)\n"
"-> (commands, tracked, untracked)\n\n"
"The learner commands of `records` (a list of (partition, bytes) in the order route_launches\n"
"gives), and how many launches this module counted as tracked and untracked. Every record it\n"
"does not read itself goes to `slow(record)`, in order, which answers its rows as a list of\n"
"(partition, row bytes, row size) and keeps its dead letters and outcomes itself.");

static PyObject *route(PyObject *module, PyObject *args) {
    PyObject *records, *slow;
    int partitions;
    Py_ssize_t raw_inline_max, limit, prefix_len, suffix_len;
    const char *prefix, *suffix;
    if (!PyArg_ParseTuple(args, "Oinny#y#O", &records, &partitions, &raw_inline_max, &limit,
                          &prefix, &prefix_len, &suffix, &suffix_len, &slow))
        return NULL;
    if (partitions < 1) {
        PyErr_SetString(PyExc_ValueError, "partitions must be at least 1");
        return NULL;
    }
    /* a tuple of its own: it holds every record while Python code runs (attribute getters,
     * `slow`), whatever that code does to `records` */
    PyObject *seq = PySequence_Tuple(records);
    if (!seq) return NULL;
    Routing routing = {NULL, partitions, NULL, 0};
    routing.parts = PyMem_Calloc(partitions, sizeof(Rows));
    routing.order = PyMem_Calloc(partitions, sizeof(int));
    PyObject *out = NULL;
    long long tracked = 0, untracked = 0;
    if (!routing.parts || !routing.order) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_ssize_t count = PyTuple_GET_SIZE(seq);
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *record = PyTuple_GET_ITEM(seq, k);
        int routed = route_one(&routing, record, raw_inline_max, &tracked, &untracked);
        if (routed < 0) goto fail;
        if (routed == 0) {
            PyObject *rows = PyObject_CallOneArg(slow, record);
            if (!rows) goto fail;
            int ok = add_slow_rows(&routing, rows);
            Py_DECREF(rows);
            if (!ok) goto fail;
        }
    }
    out = PyList_New(0);
    if (!out) goto fail;
    for (int k = 0; k < routing.ordered; k++) {
        int partition = routing.order[k];
        if (!commands_of(&routing.parts[partition], partition, limit, prefix, prefix_len, suffix,
                         suffix_len, out))
            goto fail;
    }
    free_routing(&routing);
    Py_DECREF(seq);
    return Py_BuildValue("(NLL)", out, tracked, untracked);
fail:
    Py_XDECREF(out);
    free_routing(&routing);
    Py_DECREF(seq);
    return NULL;
}

static PyMethodDef methods[] = {
    {"route", route, METH_VARARGS, route_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_router", "The launch reader's hot path in C (see route).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__router(void) {
    crc_init();
    S_value = PyUnicode_InternFromString("value");
    S_partition = PyUnicode_InternFromString("partition");
    S_offset = PyUnicode_InternFromString("offset");
    S_timestamp = PyUnicode_InternFromString("timestamp");
    if (!S_value || !S_partition || !S_offset || !S_timestamp) return NULL;
    return PyModule_Create(&module_def);
}
