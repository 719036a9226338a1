/*
 * sentinel._ledgerscan: the compiled accept path of sentinel.ledgerscan.scan_range (SQLite).
 *
 * scan_sqlite() re-does, for one range lo <= seq < hi of one log, exactly the checks of the
 * reference implementation (sentinel/ledgerscan.py, which stays the specification) and
 * returns what RangeResult needs when the range is intact. It reads the rows in table (rowid)
 * order where that is seq order, which it is for a ledger that only append wrote, and
 * otherwise with the reference's own statements (read_block_rowid, count_range). It never
 * diagnoses anything: on ANY anomaly (a hash or tail mismatch, a missing row, a value of an
 * unexpected storage class or length, invalid UTF-8, an SQLite error, ...) it returns None and
 * the Python caller re-runs the reference on the range, which names the problem. So a bug here
 * can cost speed but must never make it accept what the reference rejects; the differential
 * tests (tests/ledger/test_ledgerscan_c.py) hold the two together.
 *
 * Hashes (RFC 9162 §2.1.1 and DESIGN.md "Ledger"), all SHA-256 through OpenSSL's SHA256_*
 * functions (deprecated in 3.0 in favour of EVP, which costs 0.1 µs more per hash here; a
 * record takes three hashes):
 *   leaf  = SHA-256(0x00 || body)
 *   node  = SHA-256(0x01 || left || right)
 *   chain = SHA-256(0x02 || prev || leaf)
 * A body is the RFC 8785 (JCS) form of {"data":{...},"kind":K,"log":L,"recorded_at":R,
 * "seq":N,"v":1}; its head and canonical tail are compared byte for byte with the columns.
 *
 * The scan runs without the GIL and holds O(block) memory: one block of leaves and their
 * Merkle levels, the O(log n) stack of subtree roots, and the pieces of each checkpoint size
 * (stop) reached.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* SHA256_Init/Update/Final without deprecation warnings on OpenSSL 3 */
#define OPENSSL_API_COMPAT 0x10100000L
#include <openssl/sha.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_LEN 32
#define STACK_MAX 192    /* subtree roots on the stack; about 2 per level at most */
#define MADE_MAX 256     /* nodes merged above one block */
#define BUSY_TIMEOUT_MS 60000

/* MISS: table order was not seq order in this block (read_block_rowid), never returned */
enum outcome { OK = 0, DECLINE = 1, NO_MEMORY = 2, MISS = 3 };

/* (level, first leaf, hash) of an aligned perfect subtree: sentinel.ledgerscan.Piece */
typedef struct {
    int level;
    int64_t first;
    unsigned char hash[HASH_LEN];
} piece;

typedef struct {
    piece items[STACK_MAX];
    int n;
} piece_list;

/* a growable byte buffer */
typedef struct {
    unsigned char *p;
    size_t len, cap;
} buffer;

/* pieces of [lo, size) for one checkpoint size reached */
typedef struct {
    int64_t size;
    piece_list pieces;
} stop_result;

typedef struct {
    /* inputs */
    const char *log_id;
    Py_ssize_t log_id_len;
    const unsigned char *log_json;
    Py_ssize_t log_json_len;
    long version;
    int64_t lo, hi, block;
    int64_t *stops;
    Py_ssize_t n_stops;
    /* SQLite and OpenSSL */
    sqlite3 *db;
    sqlite3_stmt *rows_first, *rows_next, *tree;
    /* the table-order path (see read_block_rowid); NULL when it cannot be prepared */
    sqlite3_stmt *rowid_of, *rows_rowid, *range_count;
    int rowid_blocks;   /* blocks read in table order: the range count must then be checked */
    int rowid_misses;   /* blocks where table order was not seq order (then read by index) */
    /* chain and tree state */
    unsigned char start_prev[HASH_LEN];
    unsigned char prev[HASH_LEN];
    int64_t count;
    piece_list stack;
    piece_list made;
    /* one block: levels[L] holds level_len[L] nodes over leaves start + j * 2^L */
    unsigned char *levels[64];
    int64_t level_len[64];
    int n_levels;
    unsigned char *tree_buf;
    int64_t tree_cap; /* leaves the buffer has room for */
    /* body tail: cached prefix ,"kind":K,"log":L,"recorded_at":R,"seq": of the last (K, R) */
    buffer kind_raw, rec_raw, prefix;
    /* output */
    stop_result *stop_results;
    Py_ssize_t n_stop_results;
} scan;

static const char COLUMNS[] =
    "SELECT seq, recorded_at, kind, CAST(body AS BLOB), CAST(leaf_hash AS BLOB), "
    "CAST(prev_hash AS BLOB), CAST(chain_hash AS BLOB) FROM ledger_entries ";

/* ---- small helpers -------------------------------------------------------------------- */

static int buffer_reserve(buffer *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return OK;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (p == NULL)
        return NO_MEMORY;
    b->p = p;
    b->cap = cap;
    return OK;
}

static int buffer_add(buffer *b, const void *data, size_t n)
{
    if (buffer_reserve(b, n) != OK)
        return NO_MEMORY;
    if (n)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    return OK;
}

static int buffer_equals(const buffer *b, const void *data, size_t n)
{
    return b->len == n && (n == 0 || memcmp(b->p, data, n) == 0);
}

/* SHA-256(tag || a || b) into out; b may be NULL. */
static int hash3(unsigned char tag, const void *a, size_t a_len, const void *b, size_t b_len,
                 unsigned char out[HASH_LEN])
{
    SHA256_CTX ctx;
    if (SHA256_Init(&ctx) != 1 || SHA256_Update(&ctx, &tag, 1) != 1 ||
        (a_len && SHA256_Update(&ctx, a, a_len) != 1) ||
        (b_len && SHA256_Update(&ctx, b, b_len) != 1) || SHA256_Final(out, &ctx) != 1)
        return DECLINE;
    return OK;
}

/* A value holding a BLOB of exactly HASH_LEN bytes, or NULL. Column values are read through
 * sqlite3_column_value and sqlite3_value_*: the sqlite3_column_* calls each look the column up
 * again and end in sqlite3ApiExit (about 0.3 µs per row of the ~25 calls a row took). The value
 * is "unprotected" (https://sqlite.org/c3ref/value.html): safe here, as this connection is
 * used by this one thread only (SQLITE_OPEN_NOMUTEX), and it is read before the next step. */
static const unsigned char *hash_value(sqlite3_value *v)
{
    if (sqlite3_value_type(v) != SQLITE_BLOB)
        return NULL;
    const unsigned char *p = sqlite3_value_blob(v);
    return sqlite3_value_bytes(v) == HASH_LEN ? p : NULL;
}

static const unsigned char *hash_column(sqlite3_stmt *st, int col)
{
    return hash_value(sqlite3_column_value(st, col));
}

/* ---- RFC 8785 strings ------------------------------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s[0..n) (Unicode 15, table 3-7: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 if it is not one. s[0] >= 0x80. */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    size_t len;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

/* Append the JSON string of the UTF-8 text s[0..n) as RFC 8785 §3.2.2.2 (and orjson, see
 * sentinel.ledger.canonical._fast_dumps) write it: '"' and '\' escaped, U+0000..U+001F as
 * \b \t \n \f \r or \u00xx (lowercase hex), everything else as its UTF-8 bytes.
 * DECLINE if s is not well-formed UTF-8 (Python could not even decode it). */
static int json_string_into(buffer *b, const unsigned char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (buffer_reserve(b, 6 * n + 2) != OK)
        return NO_MEMORY;
    unsigned char *out = b->p + b->len;
    *out++ = '"';
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t len = utf8_sequence(s + i, n - i);
            if (len == 0)
                return DECLINE;
            memcpy(out, s + i, len);
            out += len;
            i += len;
            continue;
        }
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = c;
        } else if (c >= 0x20) {
            *out++ = c;
        } else {
            *out++ = '\\';
            switch (c) {
            case '\b': *out++ = 'b'; break;
            case '\t': *out++ = 't'; break;
            case '\n': *out++ = 'n'; break;
            case '\f': *out++ = 'f'; break;
            case '\r': *out++ = 'r'; break;
            default:
                *out++ = 'u';
                *out++ = '0';
                *out++ = '0';
                *out++ = hex[c >> 4];
                *out++ = hex[c & 15];
            }
        }
        i++;
    }
    *out++ = '"';
    b->len = (size_t)(out - b->p);
    return OK;
}

/* ---- rows ------------------------------------------------------------------------------ */

/* Rebuild the cached tail prefix when the row's (kind, recorded_at) differ from the last. */
static int update_prefix(scan *s, const unsigned char *kind, size_t kind_len,
                         const unsigned char *rec, size_t rec_len)
{
    if (s->prefix.len && buffer_equals(&s->kind_raw, kind, kind_len) &&
        buffer_equals(&s->rec_raw, rec, rec_len))
        return OK;
    int rc;
    s->prefix.len = s->kind_raw.len = s->rec_raw.len = 0;
    if ((rc = buffer_add(&s->prefix, ",\"kind\":", 8)) != OK ||
        (rc = json_string_into(&s->prefix, kind, kind_len)) != OK ||
        (rc = buffer_add(&s->prefix, ",\"log\":", 7)) != OK ||
        (rc = buffer_add(&s->prefix, s->log_json, (size_t)s->log_json_len)) != OK ||
        (rc = buffer_add(&s->prefix, ",\"recorded_at\":", 15)) != OK ||
        (rc = json_string_into(&s->prefix, rec, rec_len)) != OK ||
        (rc = buffer_add(&s->prefix, ",\"seq\":", 7)) != OK ||
        (rc = buffer_add(&s->kind_raw, kind, kind_len)) != OK ||
        (rc = buffer_add(&s->rec_raw, rec, rec_len)) != OK) {
        s->prefix.len = 0;
        return rc;
    }
    return OK;
}

/* Writes <seq>,"v":<version>} (decimal, as Python's %d) into out[64]; its length, or -1
 * for a negative seq or version (never a clean row). */
static int format_seq_tail(char out[64], int64_t seq, long version)
{
    char digits[24];
    int n = 0;
    if (seq < 0 || version < 0)
        return -1;
    do {
        digits[n++] = (char)('0' + seq % 10);
        seq /= 10;
    } while (seq > 0);
    int k = 0;
    while (n > 0)
        out[k++] = digits[--n];
    static const char v[] = ",\"v\":";
    memcpy(out + k, v, sizeof v - 1);
    k += (int)sizeof v - 1;
    n = 0;
    do {
        digits[n++] = (char)('0' + version % 10);
        version /= 10;
    } while (version > 0);
    while (n > 0)
        out[k++] = digits[--n];
    out[k++] = '}';
    return k;
}

/* The body starts with {"data":{ and ends with the canonical tail for this row:
 * the cached prefix, then <seq>,"v":<version>} (ledgerscan.scan_range's endswith). */
static int check_body_shape(const scan *s, const unsigned char *body, size_t body_len,
                            int64_t seq)
{
    static const char head[] = "{\"data\":{";
    char number[64];
    int k = format_seq_tail(number, seq, s->version);
    if (k < 0)
        return DECLINE;
    size_t tail_len = s->prefix.len + (size_t)k;
    if (body_len < sizeof head - 1 || memcmp(body, head, sizeof head - 1) != 0)
        return DECLINE;
    if (body_len < tail_len || memcmp(body + body_len - k, number, (size_t)k) != 0 ||
        memcmp(body + body_len - tail_len, s->prefix.p, s->prefix.len) != 0)
        return DECLINE;
    return OK;
}

/* One row of the keyset query: the checks of scan_range's row loop, in its order. The new
 * leaf goes to levels[0][count - start]. */
static int check_row(scan *s, sqlite3_stmt *st, int64_t start)
{
    sqlite3_value *seq_v = sqlite3_column_value(st, 0), *rec_v = sqlite3_column_value(st, 1),
                  *kind_v = sqlite3_column_value(st, 2), *body_v = sqlite3_column_value(st, 3);
    if (sqlite3_value_type(seq_v) != SQLITE_INTEGER || sqlite3_value_int64(seq_v) != s->count)
        return DECLINE;
    if (sqlite3_value_type(rec_v) != SQLITE_TEXT || sqlite3_value_type(kind_v) != SQLITE_TEXT ||
        sqlite3_value_type(body_v) != SQLITE_BLOB)
        return DECLINE;
    const unsigned char *body = sqlite3_value_blob(body_v);
    size_t body_len = (size_t)sqlite3_value_bytes(body_v);
    const unsigned char *leaf = hash_column(st, 4);
    const unsigned char *prev_hash = hash_column(st, 5);
    const unsigned char *chained = hash_column(st, 6);
    if (body == NULL || leaf == NULL || prev_hash == NULL || chained == NULL)
        return DECLINE;
    /* leaf_hash = SHA-256(0x00 || body) (RFC 9162 §2.1.1) */
    unsigned char *mine = s->levels[0] + (s->count - start) * HASH_LEN;
    if (hash3(0x00, body, body_len, NULL, 0, mine) != OK || memcmp(mine, leaf, HASH_LEN))
        return DECLINE;
    /* the canonical tail names this row's kind, log, recorded_at, seq and version */
    const unsigned char *rec = sqlite3_value_text(rec_v);
    size_t rec_len = (size_t)sqlite3_value_bytes(rec_v);
    const unsigned char *kind = sqlite3_value_text(kind_v);
    size_t kind_len = (size_t)sqlite3_value_bytes(kind_v);
    if (rec == NULL || kind == NULL)
        return DECLINE;
    int rc = update_prefix(s, kind, kind_len, rec, rec_len);
    if (rc == OK)
        rc = check_body_shape(s, body, body_len, s->count);
    if (rc != OK)
        return rc;
    /* prev_hash links to the previous chain value; chain = SHA-256(0x02 || prev || leaf) */
    unsigned char chain[HASH_LEN];
    if (memcmp(prev_hash, s->prev, HASH_LEN) != 0 ||
        hash3(0x02, s->prev, HASH_LEN, leaf, HASH_LEN, chain) != OK ||
        memcmp(chain, chained, HASH_LEN) != 0)
        return DECLINE;
    memcpy(s->prev, chain, HASH_LEN);
    s->count++;
    return OK;
}

static int bind_all(sqlite3_stmt *st, const scan *s, const int64_t *values, int n)
{
    if (sqlite3_reset(st) != SQLITE_OK || sqlite3_clear_bindings(st) != SQLITE_OK ||
        sqlite3_bind_text(st, 1, s->log_id, (int)s->log_id_len, SQLITE_STATIC) != SQLITE_OK)
        return DECLINE;
    for (int i = 0; i < n; i++)
        if (sqlite3_bind_int64(st, i + 2, values[i]) != SQLITE_OK)
            return DECLINE;
    return OK;
}

/* Read and check the next block (keyset page) of rows through the (log_id, seq) index, as
 * the reference does; *got = rows read. */
static int read_block_index(scan *s, int first_block, int64_t last, int64_t *got)
{
    sqlite3_stmt *st;
    int rc;
    if (first_block && s->lo == 0) {
        int64_t v[] = {s->hi, s->block};
        st = s->rows_first;
        rc = bind_all(st, s, v, 2);
    } else if (first_block) {
        int64_t v[] = {s->lo, s->hi, s->block};
        st = s->rows_first;
        rc = bind_all(st, s, v, 3);
    } else {
        int64_t v[] = {last, s->hi, s->block};
        st = s->rows_next;
        rc = bind_all(st, s, v, 3);
    }
    if (rc != OK)
        return rc;
    int64_t start = s->count;
    *got = 0;
    for (;;) {
        int step = sqlite3_step(st);
        if (step == SQLITE_DONE)
            break;
        if (step != SQLITE_ROW || *got >= s->tree_cap)
            return DECLINE;
        if ((rc = check_row(s, st, start)) != OK)
            return rc;
        (*got)++;
    }
    return sqlite3_reset(st) == SQLITE_OK ? OK : DECLINE;
}

/* After this many blocks read in table order turned out not to be in seq order, the rest of
 * the range is read through the index only. */
#define ROWID_MISSES_MAX 2

/* The block's rows in table (rowid) order: find the rowid of (log_id, count) through the
 * primary-key index once, then walk the table's leaf pages from there instead of descending
 * the table B-tree once per row. For an untampered ledger of one log this is seq order:
 * append writes seq ascending under BEGIN IMMEDIATE, and VACUUM keeps the order. Rows of
 * other logs in between are skipped (at most a block of them); a row of this log whose seq
 * is not the next expected one, or the end of the table, is a MISS: the caller re-reads the
 * block through the index. Each row taken is the unique row (log_id, count) of the primary
 * key, checked as check_row checks any row; that no other row of the log lies in the range
 * (say an inserted seq 5.5, never met in table order) is settled by count_range at the end.
 * *got = rows read. */
static int read_block_rowid(scan *s, int64_t *got)
{
    int64_t want = s->hi - s->count < s->block ? s->hi - s->count : s->block;
    int64_t v[] = {s->count};
    int64_t start = s->count, skipped = 0;
    int rc;
    *got = 0;
    if (want > s->tree_cap || bind_all(s->rowid_of, s, v, 1) != OK)
        return DECLINE;
    int step = sqlite3_step(s->rowid_of);
    if (step != SQLITE_ROW) {
        sqlite3_reset(s->rowid_of);
        return step == SQLITE_DONE ? MISS : DECLINE;
    }
    int64_t rowid = sqlite3_column_int64(s->rowid_of, 0);
    if (sqlite3_reset(s->rowid_of) != SQLITE_OK)
        return DECLINE;
    sqlite3_stmt *st = s->rows_rowid;
    if (sqlite3_reset(st) != SQLITE_OK || sqlite3_bind_int64(st, 1, rowid) != SQLITE_OK)
        return DECLINE;
    rc = OK;
    while (*got < want) {
        step = sqlite3_step(st);
        if (step == SQLITE_DONE) {
            rc = MISS;
            break;
        }
        if (step != SQLITE_ROW) {
            rc = DECLINE;
            break;
        }
        sqlite3_value *log_v = sqlite3_column_value(st, 7), *seq_v = sqlite3_column_value(st, 0);
        const unsigned char *log = sqlite3_value_type(log_v) == SQLITE_TEXT
                                       ? sqlite3_value_text(log_v) : NULL;
        if (log == NULL || sqlite3_value_bytes(log_v) != (int)s->log_id_len ||
            memcmp(log, s->log_id, (size_t)s->log_id_len) != 0) {
            if (++skipped > s->block) { /* another log's rows, many: the index is quicker */
                rc = MISS;
                break;
            }
            continue;
        }
        if (sqlite3_value_type(seq_v) != SQLITE_INTEGER || sqlite3_value_int64(seq_v) != s->count) {
            rc = MISS;
            break;
        }
        if ((rc = check_row(s, st, start)) != OK)
            break;
        (*got)++;
    }
    if (sqlite3_reset(st) != SQLITE_OK && rc == OK)
        rc = DECLINE;
    return rc;
}

/* The next block of rows: in table order while that works (read_block_rowid), else, and
 * for the rest of the range after ROWID_MISSES_MAX misses, through the index. */
static int read_block(scan *s, int first_block, int64_t last, int64_t *got)
{
    if (s->rows_rowid != NULL && s->rowid_misses < ROWID_MISSES_MAX) {
        int64_t start = s->count;
        unsigned char prev[HASH_LEN];
        memcpy(prev, s->prev, HASH_LEN);
        int rc = read_block_rowid(s, got);
        if (rc != MISS) {
            s->rowid_blocks += rc == OK;
            return rc;
        }
        s->rowid_misses++; /* start the block again, through the index */
        s->count = start;
        memcpy(s->prev, prev, HASH_LEN);
    }
    return read_block_index(s, first_block, last, got);
}

/* Rows of the log the reference's queries would find in the range, lo <= seq < hi (no lower
 * bound when lo is 0): after blocks read in table order it must be exactly hi - lo, the
 * contiguous integer seqs read, so no other row (a non-integer seq, say) hides in between. */
static int count_range(scan *s)
{
    int64_t v[] = {s->lo, s->hi};
    int rc = s->lo == 0 ? bind_all(s->range_count, s, v + 1, 1) : bind_all(s->range_count, s, v, 2);
    if (rc != OK || sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return DECLINE;
    if (sqlite3_step(s->range_count) != SQLITE_ROW ||
        sqlite3_column_type(s->range_count, 0) != SQLITE_INTEGER ||
        sqlite3_column_int64(s->range_count, 0) != s->hi - s->lo)
        rc = DECLINE;
    if (sqlite3_reset(s->range_count) != SQLITE_OK)
        rc = DECLINE;
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = DECLINE;
    return rc;
}

/* ---- Merkle tree (RFC 9162 §2.1.1) ------------------------------------------------------ */

/* levels[L][j] = node over leaves start + j·2^L .. of the block's m leaves (ledgerscan._levels) */
static int build_levels(scan *s, int64_t m)
{
    s->level_len[0] = m;
    s->n_levels = 1;
    unsigned char *next = s->levels[0] + m * HASH_LEN;
    while (s->level_len[s->n_levels - 1] > 1) {
        int L = s->n_levels;
        const unsigned char *below = s->levels[L - 1];
        s->levels[L] = next;
        s->level_len[L] = s->level_len[L - 1] / 2;
        for (int64_t j = 0; j < s->level_len[L]; j++)
            if (hash3(0x01, below + 2 * j * HASH_LEN, HASH_LEN,
                      below + (2 * j + 1) * HASH_LEN, HASH_LEN, next + j * HASH_LEN) != OK)
                return DECLINE;
        next += s->level_len[L] * HASH_LEN;
        s->n_levels++;
    }
    return OK;
}

/* Aligned perfect subtrees of the block's first m leaves, appended to out (_block_pieces). */
static int block_pieces(const scan *s, int64_t start, int64_t m, piece_list *out)
{
    int64_t offset = 0;
    for (int level = 62; level >= 0; level--) {
        if (!((m >> level) & 1))
            continue;
        if (level >= s->n_levels || (offset >> level) >= s->level_len[level] ||
            out->n >= STACK_MAX)
            return DECLINE;
        piece *p = &out->items[out->n++];
        p->level = level;
        p->first = start + offset;
        memcpy(p->hash, s->levels[level] + (offset >> level) * HASH_LEN, HASH_LEN);
        offset += (int64_t)1 << level;
    }
    return OK;
}

/* Append a piece to the stack, merging siblings; merged nodes go to made (ledgerscan.push). */
static int push(scan *s, const piece *p)
{
    piece_list *st = &s->stack;
    if (st->n >= STACK_MAX)
        return DECLINE;
    st->items[st->n++] = *p;
    while (st->n > 1) {
        piece *right = &st->items[st->n - 1];
        piece *left = &st->items[st->n - 2];
        if (left->level != right->level || left->level >= 62 ||
            (left->first & (((int64_t)2 << left->level) - 1)))
            return OK;
        piece node = {left->level + 1, left->first, {0}};
        if (hash3(0x01, left->hash, HASH_LEN, right->hash, HASH_LEN, node.hash) != OK)
            return DECLINE;
        st->n -= 2;
        st->items[st->n++] = node;
        if (s->made.n >= MADE_MAX)
            return DECLINE;
        s->made.items[s->made.n++] = node;
    }
    return OK;
}

/* The computed node (level, idx) completed in this block: from its levels or merged above. */
static const unsigned char *computed_node(const scan *s, int level, int64_t idx, int64_t start)
{
    if (level < s->n_levels) {
        int64_t j = idx - (start >> level);
        if (j < 0 || j >= s->level_len[level])
            return NULL;
        return s->levels[level] + j * HASH_LEN;
    }
    for (int i = 0; i < s->made.n; i++) {
        const piece *p = &s->made.items[i];
        if (p->level == level && (p->first >> level) == idx)
            return p->hash;
    }
    return NULL;
}

static int64_t ceil_shift(int64_t x, int level)
{
    return (x >> level) + ((x & (((int64_t)1 << level) - 1)) != 0);
}

/* Every stored node over leaves in [lo, count) completed by leaves start..count-1 equals the
 * computed one, and no other is stored in those index ranges (ledgerscan._compare_tree). */
static int compare_tree(scan *s, int64_t start)
{
    int64_t count = s->count;
    for (int level = 1; level < 63 && (count >> level) > 0; level++) {
        int64_t first = ceil_shift(start + 1, level) - 1;
        int64_t from_lo = ceil_shift(s->lo, level);
        if (from_lo > first)
            first = from_lo;
        int64_t last = (count >> level) - 1;
        if (first > last)
            continue;
        int64_t v[] = {level, first, last};
        if (bind_all(s->tree, s, v, 3) != OK)
            return DECLINE;
        int64_t idx = first;
        for (;;) {
            int step = sqlite3_step(s->tree);
            if (step == SQLITE_DONE)
                break;
            if (step != SQLITE_ROW || idx > last)
                return DECLINE;
            sqlite3_value *idx_v = sqlite3_column_value(s->tree, 0);
            const unsigned char *stored = hash_column(s->tree, 1);
            const unsigned char *mine = computed_node(s, level, idx, start);
            if (sqlite3_value_type(idx_v) != SQLITE_INTEGER ||
                sqlite3_value_int64(idx_v) != idx || stored == NULL || mine == NULL ||
                memcmp(stored, mine, HASH_LEN) != 0)
                return DECLINE;
            idx++;
        }
        if (sqlite3_reset(s->tree) != SQLITE_OK || idx != last + 1)
            return DECLINE; /* a node missing */
    }
    return OK;
}

/* ---- the scan -------------------------------------------------------------------------- */

static int prepare(scan *s, const char *sql, sqlite3_stmt **st)
{
    return sqlite3_prepare_v2(s->db, sql, -1, st, NULL) == SQLITE_OK ? OK : DECLINE;
}

static int open_db(scan *s, const char *path)
{
    char sql[512];
    /* one thread uses this connection: no per-call connection mutex */
    int flags = SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &s->db, flags, NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS) != SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA query_only = 1", NULL, NULL, NULL) != SQLITE_OK)
        return DECLINE;
    const char *lower = s->lo == 0 ? "" : " AND seq >= ?";
    snprintf(sql, sizeof sql, "%sWHERE log_id = ?%s AND seq < ? ORDER BY seq LIMIT ?", COLUMNS,
             lower);
    if (prepare(s, sql, &s->rows_first) != OK)
        return DECLINE;
    snprintf(sql, sizeof sql, "%sWHERE log_id = ? AND seq > ? AND seq < ? ORDER BY seq LIMIT ?",
             COLUMNS);
    if (prepare(s, sql, &s->rows_next) != OK)
        return DECLINE;
    if (prepare(s,
                "SELECT idx, hash FROM ledger_tree WHERE log_id = ? AND level = ? "
                "AND idx BETWEEN ? AND ? ORDER BY idx",
                &s->tree) != OK)
        return DECLINE;
    /* the table-order path; a table without rowids (or any error) leaves it off */
    snprintf(sql, sizeof sql, "SELECT count(*) FROM ledger_entries WHERE log_id = ?%s AND seq < ?",
             lower);
    if (prepare(s, "SELECT rowid FROM ledger_entries WHERE log_id = ? AND seq = ?",
                &s->rowid_of) != OK ||
        prepare(s, sql, &s->range_count) != OK ||
        prepare(s,
                "SELECT seq, recorded_at, kind, CAST(body AS BLOB), CAST(leaf_hash AS BLOB), "
                "CAST(prev_hash AS BLOB), CAST(chain_hash AS BLOB), log_id "
                "FROM ledger_entries WHERE rowid >= ? ORDER BY rowid",
                &s->rows_rowid) != OK) {
        sqlite3_finalize(s->rows_rowid);
        s->rows_rowid = NULL;
    }
    return OK;
}

/* The stored chain value before the range (its first row's expected prev_hash). */
static int read_start_prev(scan *s)
{
    static const unsigned char genesis[HASH_LEN] = {0};
    if (s->lo == 0) {
        memcpy(s->start_prev, genesis, HASH_LEN);
        return OK;
    }
    sqlite3_stmt *st = NULL;
    int rc = prepare(s,
                     "SELECT CAST(chain_hash AS BLOB) FROM ledger_entries "
                     "WHERE log_id = ? AND seq = ?",
                     &st);
    int64_t v[] = {s->lo - 1};
    if (rc == OK)
        rc = bind_all(st, s, v, 1);
    if (rc == OK)
        rc = sqlite3_step(st) == SQLITE_ROW ? OK : DECLINE;
    const unsigned char *h = rc == OK ? hash_column(st, 0) : NULL;
    if (h == NULL)
        rc = DECLINE;
    else
        memcpy(s->start_prev, h, HASH_LEN);
    sqlite3_finalize(st);
    return rc;
}

/* Record the pieces of [lo, size) for every checkpoint size reached by this block. */
static int record_stops(scan *s, const piece_list *before, int64_t start, Py_ssize_t *next_stop)
{
    while (*next_stop < s->n_stops && s->stops[*next_stop] <= s->count) {
        stop_result *r = &s->stop_results[s->n_stop_results];
        r->size = s->stops[*next_stop];
        r->pieces = *before;
        if (r->size <= start || block_pieces(s, start, r->size - start, &r->pieces) != OK)
            return DECLINE;
        s->n_stop_results++;
        (*next_stop)++;
    }
    return OK;
}

/* One block: rows, levels, stack, stored nodes, stops. *got = rows read. */
static int scan_block(scan *s, int first_block, int64_t last, Py_ssize_t *next_stop,
                      int64_t *got)
{
    int64_t start = s->count;
    int rc;
    if (sqlite3_exec(s->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return DECLINE;
    rc = read_block(s, first_block, last, got);
    if (rc == OK && *got > 0) {
        piece_list *before = malloc(sizeof *before);
        piece_list *pieces = malloc(sizeof *pieces);
        if (before == NULL || pieces == NULL)
            rc = NO_MEMORY;
        if (rc == OK) {
            *before = s->stack;
            pieces->n = 0;
            s->made.n = 0;
            rc = build_levels(s, *got);
        }
        if (rc == OK)
            rc = block_pieces(s, start, *got, pieces);
        for (int i = 0; rc == OK && i < pieces->n; i++)
            rc = push(s, &pieces->items[i]);
        if (rc == OK)
            rc = compare_tree(s, start);
        if (rc == OK)
            rc = record_stops(s, before, start, next_stop);
        free(before);
        free(pieces);
    }
    if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK && rc == OK)
        rc = DECLINE;
    return rc;
}

static int run_scan(scan *s, const char *path)
{
    int rc = open_db(s, path);
    if (rc == OK)
        rc = read_start_prev(s);
    if (rc != OK)
        return rc;
    memcpy(s->prev, s->start_prev, HASH_LEN);
    s->count = s->lo;
    Py_ssize_t next_stop = 0;
    int64_t last = 0;
    for (int first_block = 1;; first_block = 0) {
        int64_t got = 0;
        if ((rc = scan_block(s, first_block, last, &next_stop, &got)) != OK)
            return rc;
        if (got < s->block || (s->rowid_blocks && s->count == s->hi))
            break; /* (the index path reads on: a row with seq hi - 0.5 is an anomaly too) */
        last = s->count - 1; /* the last row's seq (checked to be count - 1) */
    }
    if (s->rowid_blocks && count_range(s) != OK)
        return DECLINE;
    /* the reference reports a missing record or unreached stop: not the happy path */
    return s->count == s->hi && next_stop == s->n_stops ? OK : DECLINE;
}

static int init_scan(scan *s)
{
    int64_t rows = s->hi - s->lo;
    s->tree_cap = rows < s->block ? rows : s->block;
    if (s->tree_cap < 1)
        s->tree_cap = 1;
    /* leaves plus every level above them: fewer than 2 * leaves nodes */
    s->tree_buf = malloc((size_t)s->tree_cap * 2 * HASH_LEN);
    s->stop_results = s->n_stops ? calloc((size_t)s->n_stops, sizeof *s->stop_results) : NULL;
    if (s->tree_buf == NULL)
        return DECLINE; /* a huge block: the reference reads only the rows that exist */
    if (s->n_stops && s->stop_results == NULL)
        return NO_MEMORY;
    s->levels[0] = s->tree_buf;
    return OK;
}

static void free_scan(scan *s)
{
    sqlite3_finalize(s->rows_first);
    sqlite3_finalize(s->rows_next);
    sqlite3_finalize(s->tree);
    sqlite3_finalize(s->rowid_of);
    sqlite3_finalize(s->rows_rowid);
    sqlite3_finalize(s->range_count);
    sqlite3_close(s->db);
    free(s->tree_buf);
    free(s->stop_results);
    free(s->kind_raw.p);
    free(s->rec_raw.p);
    free(s->prefix.p);
}

/* ---- Python interface ------------------------------------------------------------------ */

static PyObject *pieces_to_list(const piece_list *pl)
{
    PyObject *list = PyList_New(pl->n);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < pl->n; i++) {
        const piece *p = &pl->items[i];
        PyObject *item = Py_BuildValue("(iLy#)", p->level, (long long)p->first,
                                       (const char *)p->hash, (Py_ssize_t)HASH_LEN);
        if (item == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *result_tuple(const scan *s)
{
    PyObject *pieces = pieces_to_list(&s->stack);
    PyObject *stops = PyList_New(s->n_stop_results);
    if (pieces == NULL || stops == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < s->n_stop_results; i++) {
        PyObject *sp = pieces_to_list(&s->stop_results[i].pieces);
        PyObject *item = sp ? Py_BuildValue("(LN)", (long long)s->stop_results[i].size, sp)
                            : NULL;
        if (item == NULL)
            goto fail;
        PyList_SET_ITEM(stops, i, item);
    }
    return Py_BuildValue("(Ly#y#NN)", (long long)(s->count - s->lo),
                         (const char *)s->start_prev, (Py_ssize_t)HASH_LEN,
                         (const char *)s->prev, (Py_ssize_t)HASH_LEN, pieces, stops);
fail:
    Py_XDECREF(pieces);
    Py_XDECREF(stops);
    return NULL;
}

static int parse_stops(PyObject *seq, scan *s)
{
    PyObject *fast = PySequence_Fast(seq, "stops must be a sequence of int");
    if (fast == NULL)
        return -1;
    s->n_stops = PySequence_Fast_GET_SIZE(fast);
    s->stops = PyMem_RawCalloc((size_t)s->n_stops + 1, sizeof *s->stops);
    if (s->stops == NULL) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < s->n_stops; i++) {
        s->stops[i] = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(fast, i));
        if (s->stops[i] == -1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

PyDoc_STRVAR(scan_sqlite_doc,
"scan_sqlite(path, log_id, log_json, version, lo, hi, block, stops, /)\n--\n\n"
"Check rows lo <= seq < hi of log log_id in the SQLite database path (a file name or a\n"
"file: URI, opened read-only) as\n"
"sentinel.ledgerscan.scan_range does. Returns (verified, start_prev, end_chain, pieces,\n"
"stops) when every check passes, else None (the caller then runs the reference).");

static PyObject *scan_sqlite(PyObject *self, PyObject *args)
{
    (void)self;
    const char *path;
    PyObject *stops;
    scan *s = PyMem_RawCalloc(1, sizeof *s);
    if (s == NULL)
        return PyErr_NoMemory();
    if (!PyArg_ParseTuple(args, "ss#y#lLLLO:scan_sqlite", &path, &s->log_id, &s->log_id_len,
                          &s->log_json, &s->log_json_len, &s->version, &s->lo, &s->hi,
                          &s->block, &stops) ||
        parse_stops(stops, s) != 0) {
        PyMem_RawFree(s->stops);
        PyMem_RawFree(s);
        return NULL;
    }
    int rc = DECLINE;
    /* what scan_range requires of its caller; anything else is the reference's to report */
    int sane = s->lo >= 0 && s->hi > s->lo && s->block > 0 && (s->block & (s->block - 1)) == 0 &&
               s->lo % s->block == 0 && s->log_id_len < INT32_MAX;
    Py_BEGIN_ALLOW_THREADS
    if (sane)
        rc = init_scan(s);
    if (rc == OK)
        rc = run_scan(s, path);
    Py_END_ALLOW_THREADS
    PyObject *out;
    if (rc == OK)
        out = result_tuple(s);
    else if (rc == NO_MEMORY)
        out = PyErr_NoMemory();
    else
        out = Py_NewRef(Py_None);
    PyMem_RawFree(s->stops);
    s->stops = NULL;
    free_scan(s);
    PyMem_RawFree(s);
    return out;
}

PyDoc_STRVAR(json_string_doc,
"json_string(text, /)\n--\n\n"
"The RFC 8785 JSON string of UTF-8 bytes text as the scanner writes it (for tests), or None\n"
"when text is not well-formed UTF-8.");

static PyObject *json_string(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) != 0)
        return NULL;
    buffer b = {NULL, 0, 0};
    int rc = json_string_into(&b, view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    PyObject *out;
    if (rc == OK)
        out = PyBytes_FromStringAndSize((const char *)b.p, (Py_ssize_t)b.len);
    else if (rc == NO_MEMORY)
        out = PyErr_NoMemory();
    else
        out = Py_NewRef(Py_None);
    free(b.p);
    return out;
}

static PyMethodDef methods[] = {
    {"scan_sqlite", scan_sqlite, METH_VARARGS, scan_sqlite_doc},
    {"json_string", json_string, METH_O, json_string_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_ledgerscan",
    "Compiled accept path of sentinel.ledgerscan.scan_range for SQLite (see _ledgerscan.c).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__ledgerscan(void)
{
    return PyModule_Create(&module);
}
