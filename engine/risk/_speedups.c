/* What risk runs in C where the native build is fresh (engine.native): the forecast model's
 * Monte Carlo walks, its product-limit estimates, where its exits lead and the quantiles of
 * its stays, and the conversions of instants and the search among a stage's stays it makes
 * per event. Each is what its Python twin in engine/risk/forecast.py (the conversion:
 * engine/core/timemath.py) answers, to the bit; tests hold them to it.
 *
 * walks: engine.risk.forecast._walks, draw for draw. A model rebuild makes tens of thousands
 * of draws; compiled with mypyc, each still cost a call of rng.getrandbits, a new int and
 * boxed floats, over half of a rebuild's time. Here the walks run on C arrays with the
 * generator's own algorithm (MT19937, as CPython's Modules/_randommodule.c makes its words):
 * the state is read with rng.getstate(), drawn from as rng.getrandbits(k) would for
 * 0 < k <= 32 (the top k bits of the next word), and written back with rng.setstate(), so the
 * walks' draws, their sums (the same additions of doubles in the same order) and the
 * generator after them are those of the Python.
 *
 * paired_quantiles: the p50 and p85 of a stage's stays paired with the later stages' draws,
 * the first forecast from each time-in-stage bucket of a model makes; the two ranks are
 * selected in place (the k-th smallest is one value however it is found), not sorted.
 *
 * product_limit: a stage's stays as quantiles of their product-limit estimate, per stage and
 * pass of every rebuild; sorted as doubles (a stable merge, as Python's sort keeps equal
 * values in order), the float objects handed back as they came.
 *
 * leading: where each exit kept of a stage leads on the path, per stage and pass of every
 * rebuild (a dictionary look-up per exit, from C).
 *
 * outlasted: how many of a stage's sorted stays a feature has outlasted (bisect_right), once
 * per forecast with dates; compiled Python unboxed a float per step.
 *
 * microseconds, utc_microseconds, seconds_between: a datetime's microseconds since the
 * epoch (utc_microseconds: only of one in UTC, else None), and the seconds from one datetime
 * to another, from their fields with the datetime C API (compiled Python reads each field
 * through a generic attribute look-up: over a thousand instructions a conversion). Datetimes
 * of other zones than the one UTC object, or of two different zones, are left to Python's
 * own arithmetic.
 *
 * Built by engine.native.build with the compiled modules and used only with them;
 * tests/unit/engine/risk/test_speedups.py holds each function to its Python twin.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define N 624
#define M 397
#define MATRIX_A 0x9908b0dfU
#define UPPER_MASK 0x80000000U
#define LOWER_MASK 0x7fffffffU

typedef struct {
    uint32_t state[N];
    int index;
} Twister;

/* CPython's genrand_uint32. */
static uint32_t next_word(Twister *mt) {
    static const uint32_t mag01[2] = {0x0U, MATRIX_A};
    uint32_t y;
    uint32_t *s = mt->state;
    if (mt->index >= N) {
        int kk;
        for (kk = 0; kk < N - M; kk++) {
            y = (s[kk] & UPPER_MASK) | (s[kk + 1] & LOWER_MASK);
            s[kk] = s[kk + M] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        for (; kk < N - 1; kk++) {
            y = (s[kk] & UPPER_MASK) | (s[kk + 1] & LOWER_MASK);
            s[kk] = s[kk + (M - N)] ^ (y >> 1) ^ mag01[y & 0x1U];
        }
        y = (s[N - 1] & UPPER_MASK) | (s[0] & LOWER_MASK);
        s[N - 1] = s[M - 1] ^ (y >> 1) ^ mag01[y & 0x1U];
        mt->index = 0;
    }
    y = s[mt->index++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680U;
    y ^= (y << 15) & 0xefc60000U;
    y ^= (y >> 18);
    return y;
}

/* rng.choice's index into ``count`` items (count >= 1): getrandbits(count.bit_length())
 * until below count. */
static Py_ssize_t pick(Twister *mt, uint32_t count, int shift) {
    uint32_t r = next_word(mt) >> shift;
    while (r >= count)
        r = next_word(mt) >> shift;
    return (Py_ssize_t)r;
}

static int shift_for(Py_ssize_t count) { /* 32 - count.bit_length() */
    int bits = 0;
    while (count >> bits)
        bits++;
    return 32 - bits;
}

typedef struct {
    double *observed; /* sorted stays drawn from, or none: ``fixed`` (the SLA) */
    Py_ssize_t count;
    int shift;
    double fixed;
} Stays;

typedef struct {
    Py_ssize_t *ways; /* path indices of where the stage was left for */
    Py_ssize_t count;
    int shift;
} Moves;

static int read_state(PyObject *rng, Twister *mt, PyObject **gauss) {
    PyObject *got = PyObject_CallMethod(rng, "getstate", NULL);
    if (got == NULL)
        return -1;
    PyObject *words = NULL;
    int ok = PyTuple_Check(got) && PyTuple_GET_SIZE(got) == 3;
    if (ok) {
        words = PyTuple_GET_ITEM(got, 1);
        ok = PyTuple_Check(words) && PyTuple_GET_SIZE(words) == N + 1;
    }
    if (!ok) {
        Py_DECREF(got);
        PyErr_SetString(PyExc_ValueError, "rng.getstate() is not a Mersenne Twister's");
        return -1;
    }
    for (int i = 0; i < N; i++) {
        unsigned long word = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(words, i));
        if (word == (unsigned long)-1 && PyErr_Occurred()) {
            Py_DECREF(got);
            return -1;
        }
        mt->state[i] = (uint32_t)word;
    }
    long index = PyLong_AsLong(PyTuple_GET_ITEM(words, N));
    if (index == -1 && PyErr_Occurred()) {
        Py_DECREF(got);
        return -1;
    }
    if (index < 0 || index > N) {
        Py_DECREF(got);
        PyErr_SetString(PyExc_ValueError, "rng.getstate() has an index out of range");
        return -1;
    }
    mt->index = (int)index;
    *gauss = Py_NewRef(PyTuple_GET_ITEM(got, 2));
    Py_DECREF(got);
    return 0;
}

static int write_state(PyObject *rng, const Twister *mt, PyObject *gauss) {
    PyObject *words = PyTuple_New(N + 1);
    if (words == NULL)
        return -1;
    for (int i = 0; i < N; i++) {
        PyObject *word = PyLong_FromUnsignedLong(mt->state[i]);
        if (word == NULL) {
            Py_DECREF(words);
            return -1;
        }
        PyTuple_SET_ITEM(words, i, word);
    }
    PyObject *index = PyLong_FromLong(mt->index);
    if (index == NULL) {
        Py_DECREF(words);
        return -1;
    }
    PyTuple_SET_ITEM(words, N, index);
    PyObject *state = Py_BuildValue("(iNO)", 3, words, gauss);
    if (state == NULL)
        return -1;
    PyObject *done = PyObject_CallMethod(rng, "setstate", "(O)", state);
    Py_DECREF(state);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 0;
}

/* item ``i`` of sequence ``seq`` (a tuple or a list), borrowed. */
static PyObject *item(PyObject *seq, Py_ssize_t i, const char *what) {
    if (PyTuple_Check(seq) && i < PyTuple_GET_SIZE(seq))
        return PyTuple_GET_ITEM(seq, i);
    if (PyList_Check(seq) && i < PyList_GET_SIZE(seq))
        return PyList_GET_ITEM(seq, i);
    PyErr_Format(PyExc_TypeError, "%s: a tuple or list of at least %zd items expected", what,
                 i + 1);
    return NULL;
}

static Py_ssize_t length(PyObject *seq, const char *what) {
    if (PyTuple_Check(seq))
        return PyTuple_GET_SIZE(seq);
    if (PyList_Check(seq))
        return PyList_GET_SIZE(seq);
    PyErr_Format(PyExc_TypeError, "%s: a tuple or list expected", what);
    return -1;
}

/* One pass's stays of a stage, ``(observed, fixed)``, into ``out`` (its array from
 * ``heap``, advanced past it). */
static int read_stays(PyObject *kind, Stays *out, double **heap) {
    PyObject *observed = item(kind, 0, "a stage's stays");
    PyObject *fixed = observed ? item(kind, 1, "a stage's stays") : NULL;
    if (fixed == NULL)
        return -1;
    Py_ssize_t count = length(observed, "a stage's observed stays");
    if (count < 0)
        return -1;
    if (count > (Py_ssize_t)UINT32_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "too many stays to draw from with one word");
        return -1;
    }
    out->fixed = PyFloat_AsDouble(fixed);
    if (out->fixed == -1.0 && PyErr_Occurred())
        return -1;
    out->observed = *heap;
    out->count = count;
    out->shift = shift_for(count);
    for (Py_ssize_t i = 0; i < count; i++) {
        double value = PyFloat_AsDouble(item(observed, i, "a stage's observed stays"));
        if (value == -1.0 && PyErr_Occurred())
            return -1;
        out->observed[i] = value;
    }
    *heap += count;
    return 0;
}

static int read_moves(PyObject *ways, Moves *out, Py_ssize_t **heap) {
    Py_ssize_t count = length(ways, "a stage's exits");
    if (count < 0)
        return -1;
    if (count < 1 || count > (Py_ssize_t)UINT32_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "a stage needs at least one exit to walk on");
        return -1;
    }
    out->ways = *heap;
    out->count = count;
    out->shift = shift_for(count);
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t to = PyLong_AsSsize_t(item(ways, i, "a stage's exits"));
        if (to == -1 && PyErr_Occurred())
            return -1;
        if (to < 0) {
            PyErr_SetString(PyExc_ValueError, "an exit to a negative path index");
            return -1;
        }
        out->ways[i] = to;
    }
    *heap += count;
    return 0;
}

/* How many doubles and indices the arrays of ``kinds`` and ``nexts`` need. */
static int sizes(PyObject *kinds, PyObject *nexts, Py_ssize_t size, Py_ssize_t *values,
                 Py_ssize_t *indices) {
    *values = *indices = 0;
    for (Py_ssize_t k = 0; k < size; k++) {
        PyObject *pair = item(kinds, k, "kinds");
        PyObject *ways = pair ? item(nexts, k, "nexts") : NULL;
        if (ways == NULL)
            return -1;
        for (Py_ssize_t p = 0; p < 2; p++) {
            PyObject *kind = item(pair, p, "a stage's stays by pass");
            PyObject *observed = kind ? item(kind, 0, "a stage's stays") : NULL;
            PyObject *exits = observed ? item(ways, p, "a stage's exits by pass") : NULL;
            Py_ssize_t n = exits ? length(observed, "a stage's observed stays") : -1;
            Py_ssize_t m = n >= 0 ? length(exits, "a stage's exits") : -1;
            if (m < 0)
                return -1;
            *values += n;
            *indices += m;
        }
    }
    return 0;
}

static PyObject *walks(PyObject *module, PyObject *args, PyObject *kwargs) {
    static char *keywords[] = {"rng", "kinds", "nexts", "n", "limit", "starts", NULL};
    PyObject *rng, *kinds, *nexts, *starts = Py_None;
    Py_ssize_t n, limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOOnn|O:walks", keywords, &rng, &kinds,
                                     &nexts, &n, &limit, &starts))
        return NULL;
    (void)module;
    Py_ssize_t size = length(kinds, "kinds"), stages = length(nexts, "nexts");
    if (size < 0 || stages < 0)
        return NULL;
    if (stages != size) {
        PyErr_SetString(PyExc_ValueError, "kinds and nexts are of different lengths");
        return NULL;
    }
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "a negative number of draws");
        return NULL;
    }
    Py_ssize_t starting = starts == Py_None ? size : length(starts, "starts");
    if (starting < 0)
        return NULL;
    Py_ssize_t values, indices;
    if (sizes(kinds, nexts, size, &values, &indices) < 0)
        return NULL;

    PyObject *tails = NULL, *gauss = NULL;
    Twister *mt = PyMem_Malloc(sizeof(Twister));
    Stays *stays = PyMem_Calloc(2 * (size_t)size + 1, sizeof(Stays));
    Moves *moves = PyMem_Calloc(2 * (size_t)size + 1, sizeof(Moves));
    double *observed = PyMem_Malloc(((size_t)values + 1) * sizeof(double));
    Py_ssize_t *ways = PyMem_Malloc(((size_t)indices + 1) * sizeof(Py_ssize_t));
    if (mt == NULL || stays == NULL || moves == NULL || observed == NULL || ways == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *next_value = observed;
    Py_ssize_t *next_index = ways;
    for (Py_ssize_t k = 0; k < size; k++) {
        PyObject *pair = item(kinds, k, "kinds"), *exits = item(nexts, k, "nexts");
        for (Py_ssize_t p = 0; p < 2; p++) {
            if (read_stays(item(pair, p, "a stage's stays by pass"), &stays[2 * k + p],
                           &next_value) < 0 ||
                read_moves(item(exits, p, "a stage's exits by pass"), &moves[2 * k + p],
                           &next_index) < 0)
                goto done;
        }
    }
    if (read_state(rng, mt, &gauss) < 0)
        goto done;
    tails = PyList_New(starting);
    if (tails == NULL)
        goto done;
    for (Py_ssize_t s = 0; s < starting; s++) {
        Py_ssize_t k = s, reach = s;
        if (starts != Py_None) {
            PyObject *start = item(starts, s, "starts");
            PyObject *stage = start ? item(start, 0, "a start (k, reach)") : NULL;
            PyObject *far = stage ? item(start, 1, "a start (k, reach)") : NULL;
            if (far == NULL)
                goto failed;
            k = PyLong_AsSsize_t(stage);
            reach = PyLong_AsSsize_t(far);
            if ((k == -1 || reach == -1) && PyErr_Occurred())
                goto failed;
            if (k < 0 || k >= size) {
                PyErr_SetString(PyExc_IndexError, "a start's stage is not on the path");
                goto failed;
            }
        }
        PyObject *row = PyList_New(n);
        if (row == NULL)
            goto failed;
        PyList_SET_ITEM(tails, s, row);
        const Moves *first = &moves[2 * k + (k < reach)];
        for (Py_ssize_t i = 0; i < n; i++) {
            double total = 0.0;
            Py_ssize_t at = first->ways[pick(mt, (uint32_t)first->count, first->shift)];
            Py_ssize_t steps = 0, far = reach;
            while (at < size && steps < limit) {
                if (at > far)
                    far = at;
                int rework = at < far;
                const Stays *stay = &stays[2 * at + rework];
                if (stay->count)
                    total += stay->observed[pick(mt, (uint32_t)stay->count, stay->shift)];
                else
                    total += stay->fixed;
                const Moves *move = &moves[2 * at + rework];
                at = move->ways[pick(mt, (uint32_t)move->count, move->shift)];
                steps++;
            }
            PyObject *drawn = PyFloat_FromDouble(total);
            if (drawn == NULL)
                goto failed;
            PyList_SET_ITEM(row, i, drawn);
        }
    }
    if (write_state(rng, mt, gauss) < 0)
        goto failed;
    goto done;
failed:
    Py_CLEAR(tails);
done:
    Py_XDECREF(gauss);
    PyMem_Free(mt);
    PyMem_Free(stays);
    PyMem_Free(moves);
    PyMem_Free(observed);
    PyMem_Free(ways);
    return tails;
}

/* CPython's ymd_to_ord (Modules/_datetimemodule.c): days since 0001-01-01, day 1. */
static long ordinal(int year, int month, int day) {
    static const int before_month[] = {0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    long y = year - 1;
    int leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    return y * 365 + y / 4 - y / 100 + y / 400 + before_month[month] + (month > 2 && leap) + day;
}

/* The datetime's fields as microseconds since 1970-01-01 of its own clock (49 bits). */
static long long local_microseconds(PyObject *at) {
    long long days = ordinal(PyDateTime_GET_YEAR(at), PyDateTime_GET_MONTH(at),
                             PyDateTime_GET_DAY(at)) - 719163;
    long long seconds = days * 86400 + PyDateTime_DATE_GET_HOUR(at) * 3600 +
                        PyDateTime_DATE_GET_MINUTE(at) * 60 + PyDateTime_DATE_GET_SECOND(at);
    return seconds * 1000000 + PyDateTime_DATE_GET_MICROSECOND(at);
}

static PyObject *epoch, *one_microsecond; /* datetime(1970, 1, 1, tzinfo=UTC), timedelta(microseconds=1) */

static PyObject *microseconds(PyObject *module, PyObject *at) {
    (void)module;
    if (PyDateTime_CheckExact(at) && PyDateTime_DATE_GET_TZINFO(at) == PyDateTime_TimeZone_UTC)
        return PyLong_FromLongLong(local_microseconds(at));
    PyObject *span = PyNumber_Subtract(at, epoch); /* another zone: (at - EPOCH) // 1 us */
    if (span == NULL)
        return NULL;
    PyObject *found = PyNumber_FloorDivide(span, one_microsecond);
    Py_DECREF(span);
    return found;
}

static PyObject *utc_microseconds(PyObject *module, PyObject *at) {
    (void)module;
    if (!PyDateTime_Check(at)) {
        PyErr_SetString(PyExc_TypeError, "utc_microseconds(at: datetime)");
        return NULL;
    }
    if (PyDateTime_DATE_GET_TZINFO(at) == PyDateTime_TimeZone_UTC)
        return PyLong_FromLongLong(local_microseconds(at));
    Py_RETURN_NONE; /* another zone: its clock is not the instant's */
}

static PyObject *seconds_between(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "seconds_between(later, earlier)");
        return NULL;
    }
    PyObject *later = args[0], *earlier = args[1];
    if (PyDateTime_CheckExact(later) && PyDateTime_CheckExact(earlier) &&
        PyDateTime_DATE_GET_TZINFO(later) == PyDateTime_DATE_GET_TZINFO(earlier)) {
        /* One zone: the difference of the fields, as datetime's subtraction takes it. */
        long long us = local_microseconds(later) - local_microseconds(earlier);
        if (-(1LL << 53) <= us && us <= (1LL << 53))
            return PyFloat_FromDouble((double)us / 1e6); /* both exact: rounded once */
    }
    PyObject *span = PyNumber_Subtract(later, earlier);
    if (span == NULL)
        return NULL;
    PyObject *found = PyObject_CallMethod(span, "total_seconds", NULL);
    Py_DECREF(span);
    return found;
}

/* The k-th smallest of values[0..n) (k < n), moving them (Hoare's selection). */
static double select_kth(double *values, Py_ssize_t n, Py_ssize_t k) {
    Py_ssize_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = values[lo + (hi - lo) / 2];
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (values[i] < pivot)
                i++;
            while (pivot < values[j])
                j--;
            if (i <= j) {
                double swap = values[i];
                values[i++] = values[j];
                values[j--] = swap;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break; /* values[j + 1 .. i - 1] all equal the pivot */
    }
    return values[k];
}

/* Nearest rank, as engine.risk.forecast.quantile: max(1, ceil(q * n)) - 1. */
static Py_ssize_t rank(double q, Py_ssize_t n) {
    double r = ceil(q * (double)n);
    return r < 1.0 ? 0 : (Py_ssize_t)r - 1;
}

static PyObject *paired_quantiles(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "paired_quantiles(observed, first, draws, reps)");
        return NULL;
    }
    PyObject *observed = args[0], *draws = args[2];
    Py_ssize_t first = PyLong_AsSsize_t(args[1]), reps = PyLong_AsSsize_t(args[3]);
    if ((first == -1 || reps == -1) && PyErr_Occurred())
        return NULL;
    Py_ssize_t count = length(observed, "observed"), n = length(draws, "draws");
    if (count < 0 || n < 0)
        return NULL;
    if (first < 0 || reps < 0) {
        PyErr_SetString(PyExc_ValueError, "a negative first or reps");
        return NULL;
    }
    Py_ssize_t m = first < count ? (count - first) * reps : 0;
    if (m == 0 || n == 0) {
        PyErr_SetString(PyExc_IndexError, "no sums to take quantiles of");
        return NULL;
    }
    double *sums = PyMem_Malloc((size_t)m * sizeof(double));
    if (sums == NULL)
        return PyErr_NoMemory();
    Py_ssize_t at = 0;
    for (Py_ssize_t j = first; j < count; j++) {
        double x = PyFloat_AsDouble(item(observed, j, "observed"));
        if (x == -1.0 && PyErr_Occurred())
            goto failed;
        for (Py_ssize_t r = 0; r < reps; r++) {
            double draw = PyFloat_AsDouble(item(draws, (j * reps + r) % n, "draws"));
            if (draw == -1.0 && PyErr_Occurred())
                goto failed;
            sums[at++] = x + draw;
        }
    }
    /* The p85's rank first: selecting it leaves every smaller sum before it. */
    Py_ssize_t k85 = rank(0.85, m), k50 = rank(0.5, m);
    double p85 = select_kth(sums, m, k85);
    double p50 = select_kth(sums, k85 + 1, k50);
    PyMem_Free(sums);
    return Py_BuildValue("(dd)", p50, p85);
failed:
    PyMem_Free(sums);
    return NULL;
}

/* Where each exit leads on the path: leads[to] for each exit found in leads, in order. */
static PyObject *leading(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "leading(leads: dict, exits)");
        return NULL;
    }
    PyObject *exits = PySequence_Fast(args[1], "leading(leads, exits): exits is no sequence");
    if (exits == NULL)
        return NULL;
    PyObject *found = PyList_New(0);
    Py_ssize_t n = PySequence_Fast_GET_SIZE(exits);
    PyObject **items = PySequence_Fast_ITEMS(exits);
    for (Py_ssize_t i = 0; found != NULL && i < n; i++) {
        PyObject *k = PyDict_GetItemWithError(args[0], items[i]); /* borrowed */
        if ((k == NULL && PyErr_Occurred()) || (k != NULL && PyList_Append(found, k) < 0))
            Py_CLEAR(found);
    }
    Py_DECREF(exits);
    return found;
}

/* How many of the ascending observed stays elapsed has reached: bisect_right. */
static PyObject *outlasted(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "outlasted(observed: tuple, elapsed)");
        return NULL;
    }
    PyObject *observed = args[0], *elapsed = args[1];
    int exact = PyFloat_CheckExact(elapsed);
    double at = exact ? PyFloat_AS_DOUBLE(elapsed) : 0.0;
    Py_ssize_t lo = 0, hi = PyTuple_GET_SIZE(observed);
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        PyObject *value = PyTuple_GET_ITEM(observed, mid);
        int below;
        if (exact && PyFloat_CheckExact(value))
            below = at < PyFloat_AS_DOUBLE(value);
        else if ((below = PyObject_RichCompareBool(elapsed, value, Py_LT)) < 0)
            return NULL; /* not two floats: as Python compares them */
        if (below)
            hi = mid;
        else
            lo = mid + 1;
    }
    return PyLong_FromSsize_t(lo);
}

/* A stay's duration, and the float object it came as (answered as it came, as Python's
 * sorted list hands back its items). */
typedef struct {
    double seconds;
    PyObject *value;
} Timed;

/* values[0..n) in ascending order of seconds, equal ones kept in their order (as Python's
 * sort), by merging runs back and forth between values and spare (n items). */
static void merge_sort(Timed *values, Timed *spare, Py_ssize_t n) {
    Timed *from = values, *to = spare;
    for (Py_ssize_t width = 1; width < n; width *= 2) {
        for (Py_ssize_t lo = 0; lo < n; lo += 2 * width) {
            Py_ssize_t mid = width < n - lo ? lo + width : n;
            Py_ssize_t hi = 2 * width < n - lo ? lo + 2 * width : n;
            Py_ssize_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                to[k++] = from[j].seconds < from[i].seconds ? from[j++] : from[i++];
            while (i < mid)
                to[k++] = from[i++];
            while (j < hi)
                to[k++] = from[j++];
        }
        Timed *swap = from;
        from = to;
        to = swap;
    }
    if (from != values)
        memcpy(values, from, (size_t)n * sizeof(Timed));
}

/* The items of a list of numbers into out, each with its double (PyFloat_AsDouble). */
static int read_timed(PyObject *list, Timed *out, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        out[i].value = PyList_GET_ITEM(list, i);
        out[i].seconds = PyFloat_AsDouble(out[i].value);
        if (out[i].seconds == -1.0 && PyErr_Occurred())
            return -1;
    }
    return 0;
}

static PyObject *product_limit(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 2 || !PyList_Check(args[0]) || !PyList_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "product_limit(ended: list, censored: list)");
        return NULL;
    }
    Py_ssize_t ne = PyList_GET_SIZE(args[0]), nc = PyList_GET_SIZE(args[1]);
    if (ne < 2)
        return PyTuple_New(0);
    Py_ssize_t n = ne + nc;
    Timed *ends = PyMem_Malloc((size_t)(2 * n) * sizeof(Timed));
    if (ends == NULL)
        return PyErr_NoMemory();
    Timed *cens = ends + ne, *spare = ends + n;
    PyObject *out = NULL;
    if (read_timed(args[0], ends, ne) < 0 || read_timed(args[1], cens, nc) < 0)
        goto done;
    merge_sort(ends, spare, ne);
    merge_sort(cens, spare, nc);
    out = PyTuple_New(n);
    if (out == NULL)
        goto done;
    if (nc == 0) { /* nothing censored: the estimate is the stays themselves */
        for (Py_ssize_t k = 0; k < ne; k++)
            PyTuple_SET_ITEM(out, k, Py_NewRef(ends[k].value));
        goto done;
    }
    PyObject *longest = ends[ne - 1].seconds < cens[nc - 1].seconds ? cens[nc - 1].value
                                                                      : ends[ne - 1].value;
    double survival = 1.0;
    Py_ssize_t i = 0, j = 0, c = 0;
    while (i < ne) {
        double t = ends[i].seconds;
        Py_ssize_t first = i;
        while (i < ne && ends[i].seconds == t)
            i++;
        while (c < nc && cens[c].seconds < t)
            c++;
        survival *= 1 - (double)(i - first) / (double)(n - first - c);
        double left = 1.0 - survival + 1e-9;
        while (j < n && (j + 0.5) / (double)n <= left)
            PyTuple_SET_ITEM(out, j++, Py_NewRef(ends[first].value));
    }
    while (j < n)
        PyTuple_SET_ITEM(out, j++, Py_NewRef(longest));
done:
    PyMem_Free(ends);
    return out;
}

static PyMethodDef methods[] = {
    {"walks", (PyCFunction)(void (*)(void))walks, METH_VARARGS | METH_KEYWORDS,
     "walks(rng, kinds, nexts, n, limit, starts=None)\n--\n\n"
     "engine.risk.forecast._walks in C: the same draws from rng, the same tails."},
    {"microseconds", microseconds, METH_O,
     "microseconds(at)\n--\n\n(at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)"},
    {"paired_quantiles", (PyCFunction)(void (*)(void))paired_quantiles, METH_FASTCALL,
     "paired_quantiles(observed, first, draws, reps)\n--\n\n"
     "engine.risk.forecast.paired_quantiles: the same p50 and p85, selected, not sorted."},
    {"utc_microseconds", utc_microseconds, METH_O,
     "utc_microseconds(at)\n--\n\nmicroseconds(at) where at is in datetime.UTC, else None"},
    {"leading", (PyCFunction)(void (*)(void))leading, METH_FASTCALL,
     "leading(leads, exits)\n--\n\n[leads[to] for to in exits if to in leads]"},
    {"outlasted", (PyCFunction)(void (*)(void))outlasted, METH_FASTCALL,
     "outlasted(observed, elapsed)\n--\n\nbisect.bisect_right(observed, elapsed)"},
    {"product_limit", (PyCFunction)(void (*)(void))product_limit, METH_FASTCALL,
     "product_limit(ended, censored)\n--\n\n"
     "engine.risk.forecast.product_limit: the same quantiles, sorted in C."},
    {"seconds_between", (PyCFunction)(void (*)(void))seconds_between, METH_FASTCALL,
     "seconds_between(later, earlier)\n--\n\n(later - earlier).total_seconds()"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "engine.risk._speedups",
    "What risk runs in C where the native build is fresh (see engine.risk.forecast).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    if (epoch == NULL) {
        epoch = PyDateTimeAPI->DateTime_FromDateAndTime(1970, 1, 1, 0, 0, 0, 0,
                                                        PyDateTime_TimeZone_UTC,
                                                        PyDateTimeAPI->DateTimeType);
        one_microsecond = PyDelta_FromDSU(0, 0, 1);
        if (epoch == NULL || one_microsecond == NULL)
            return NULL;
    }
    return PyModule_Create(&module);
}
