/* Optional C accelerator for the line, netstring, length-prefixed and RESP decoders.
 *
 * Each function cuts the well-formed, complete frames at the front of a buffer, at most
 * max_frames of them, and stops at the first frame it cannot take whole (incomplete, over a
 * limit, malformed). It returns
 * (frames, position): the Python decoder then carries on from `position` with its own loop,
 * which makes every decision about what remains (wait, or which error). So this file only
 * makes the common case fast; the pure-Python loop alone gives the same results.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static int
get_ssize(PyObject *obj, Py_ssize_t *out)
{
    *out = PyLong_AsSsize_t(obj);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
finish(PyObject *frames, Py_ssize_t pos)
{
    return Py_BuildValue("(Nn)", frames, pos);
}

static int
append_frame(PyObject *frames, const char *prefix, Py_ssize_t prefix_size,
             const char *body, Py_ssize_t body_size)
{
    PyObject *frame = PyBytes_FromStringAndSize(NULL, prefix_size + body_size);
    if (frame == NULL) {
        return -1;
    }
    char *out = PyBytes_AS_STRING(frame);
    if (prefix_size) {
        memcpy(out, prefix, (size_t)prefix_size);
    }
    memcpy(out + prefix_size, body, (size_t)body_size);
    int rc = PyList_Append(frames, frame);
    Py_DECREF(frame);
    return rc;
}

/* cut_prefixed(src, pos, length_offset, width, big, adjust, max_length, max_frames)
 *   -> (frames, pos) */
static PyObject *
cut_prefixed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, field_at, width, adjust, max_length, max_frames;
    if (nargs != 8 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "cut_prefixed(src: bytes, pos, length_offset, width, big, adjust, "
                        "max_length, max_frames)");
        return NULL;
    }
    int big = PyObject_IsTrue(args[4]);
    if (get_ssize(args[1], &pos) || get_ssize(args[2], &field_at) ||
        get_ssize(args[3], &width) || big < 0 || get_ssize(args[5], &adjust) ||
        get_ssize(args[6], &max_length) || get_ssize(args[7], &max_frames)) {
        return NULL;
    }
    if (width < 1 || width > 8 || field_at < 0 || pos < 0 || max_length < 0) {
        PyErr_SetString(PyExc_ValueError, "cut_prefixed: parameter out of range");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    Py_ssize_t header = field_at + width;
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    while (pos <= n - header && PyList_GET_SIZE(frames) < max_frames) {
        const unsigned char *field = (const unsigned char *)buf + pos + field_at;
        unsigned long long value = 0;
        for (Py_ssize_t k = 0; k < width; k++) {
            value = (value << 8) | field[big ? k : width - 1 - k];
        }
        /* Compare without overflow: the body length is value + adjust. */
        if (value > (unsigned long long)max_length + (unsigned long long)(adjust < 0 ? -adjust : 0)) {
            break;
        }
        long long length = (long long)value + (long long)adjust;
        if (length < 0 || length > (long long)max_length) {
            break;
        }
        if (length > n - pos - header) {
            break;
        }
        if (append_frame(frames, buf + pos, field_at, buf + pos + header, (Py_ssize_t)length)) {
            Py_DECREF(frames);
            return NULL;
        }
        pos += header + (Py_ssize_t)length;
    }
    return finish(frames, pos);
}

/* cut_netstring(src, pos, max_length, max_frames) -> (frames, pos) */
static PyObject *
cut_netstring(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, max_length, max_frames;
    if (nargs != 4 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "cut_netstring(src: bytes, pos, max_length, max_frames)");
        return NULL;
    }
    if (get_ssize(args[1], &pos) || get_ssize(args[2], &max_length) ||
        get_ssize(args[3], &max_frames)) {
        return NULL;
    }
    if (pos < 0 || max_length < 0) {
        PyErr_SetString(PyExc_ValueError, "cut_netstring: parameter out of range");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    while (pos < n && PyList_GET_SIZE(frames) < max_frames) {
        Py_ssize_t i = pos;
        Py_ssize_t length = 0;
        while (i < n && buf[i] >= '0' && buf[i] <= '9') {
            length = length * 10 + (buf[i] - '0');
            i++;
            if (length > max_length) {
                break;
            }
        }
        if (i == pos || i >= n || buf[i] != ':' || length > max_length) {
            break; /* empty, unfinished, malformed or too long: the Python loop decides */
        }
        if (buf[pos] == '0' && i - pos > 1) {
            break; /* leading zero */
        }
        Py_ssize_t start = i + 1;
        if (length >= n - start) {
            break; /* the body and its comma are not all here */
        }
        if (buf[start + length] != ',') {
            break;
        }
        if (append_frame(frames, NULL, 0, buf + start, length)) {
            Py_DECREF(frames);
            return NULL;
        }
        pos = start + length + 1;
    }
    return finish(frames, pos);
}

/* The first occurrence of needle in haystack, or NULL. */
static const char *
find(const char *haystack, Py_ssize_t size, const char *needle, Py_ssize_t needle_size)
{
    const char *end = haystack + size - needle_size;
    const char *p = haystack;
    while (p <= end) {
        p = memchr(p, needle[0], (size_t)(end - p + 1));
        if (p == NULL) {
            return NULL;
        }
        if (memcmp(p + 1, needle + 1, (size_t)(needle_size - 1)) == 0) {
            return p;
        }
        p++;
    }
    return NULL;
}

/* cut_lines(src, pos, delimiter, max_length, max_frames) -> (frames, pos) */
static PyObject *
cut_lines(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, max_length, max_frames;
    if (nargs != 5 || !PyBytes_Check(args[0]) || !PyBytes_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "cut_lines(src: bytes, pos, delimiter: bytes, max_length, max_frames)");
        return NULL;
    }
    if (get_ssize(args[1], &pos) || get_ssize(args[3], &max_length) ||
        get_ssize(args[4], &max_frames)) {
        return NULL;
    }
    const char *delimiter = PyBytes_AS_STRING(args[2]);
    Py_ssize_t delimiter_size = PyBytes_GET_SIZE(args[2]);
    if (pos < 0 || max_length < 0 || delimiter_size < 1) {
        PyErr_SetString(PyExc_ValueError, "cut_lines: parameter out of range");
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    PyObject *frames = PyList_New(0);
    if (frames == NULL) {
        return NULL;
    }
    while (pos < n && PyList_GET_SIZE(frames) < max_frames) {
        /* A line within the limit has its delimiter end by pos + max_length + size. */
        Py_ssize_t window = n - pos;
        if (window > max_length + delimiter_size) {
            window = max_length + delimiter_size;
        }
        const char *hit = find(buf + pos, window, delimiter, delimiter_size);
        if (hit == NULL) {
            break;
        }
        if (append_frame(frames, NULL, 0, buf + pos, hit - (buf + pos))) {
            Py_DECREF(frames);
            return NULL;
        }
        pos = (hit - buf) + delimiter_size;
    }
    return finish(frames, pos);
}

/* A RESP header's number at buf[i], written as Redis writes it (digits, no leading zero
 * but "0" itself, at most 18 of them) and followed by CRLF: its value, *after set just
 * past the CRLF; else -1 (anything else, or not all here: the Python loop decides). */
static long long
resp_number(const char *buf, Py_ssize_t i, Py_ssize_t n, Py_ssize_t *after)
{
    Py_ssize_t start = i;
    long long value = 0;
    while (i < n && buf[i] >= '0' && buf[i] <= '9') {
        if (i - start == 18) {
            return -1;
        }
        value = value * 10 + (buf[i] - '0');
        i++;
    }
    if (i == start || (buf[start] == '0' && i - start > 1)) {
        return -1;
    }
    if (i + 1 >= n || buf[i] != '\r' || buf[i + 1] != '\n') {
        return -1;
    }
    *after = i + 2;
    return value;
}

/* The command at buf[pos] when it is a whole array of 1..max_array bulk strings of at
 * most max_bulk bytes each, or a plain inline command: the list of its arguments, *end set
 * just after it. NULL with no exception set for anything else (*0, a malformed or
 * unfinished one). An array is checked first, built after: one not all here allocates
 * nothing. */
static int
resp_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The inline command at buf[pos] (a line as typed by hand, ended by LF, a CR before it
 * dropped) when it holds plain words only: the list of its words split at spaces, *end set
 * after its LF. NULL with no exception set for a line not all here or over max_inline, or
 * one holding a quote, NUL, VT or FF (the Python loop splits those as Redis does). */
static PyObject *
resp_inline(const char *buf, Py_ssize_t n, Py_ssize_t pos, long long max_inline,
            Py_ssize_t *end)
{
    Py_ssize_t window = n - pos;
    if ((long long)window - 1 > max_inline) { /* (max_inline + 1 may overflow) */
        window = (Py_ssize_t)max_inline + 1;
    }
    const char *newline = memchr(buf + pos, '\n', (size_t)window);
    if (newline == NULL) {
        return NULL;
    }
    Py_ssize_t stop = newline - buf;
    for (Py_ssize_t i = pos; i < stop; i++) {
        char c = buf[i];
        if (c == '"' || c == '\'' || c == '\0' || c == '\x0b' || c == '\x0c') {
            return NULL;
        }
    }
    PyObject *words = PyList_New(0);
    if (words == NULL) {
        return NULL;
    }
    Py_ssize_t i = pos;
    for (;;) {
        while (i < stop && resp_space(buf[i])) {
            i++;
        }
        if (i >= stop) {
            break;
        }
        Py_ssize_t start = i;
        while (i < stop && !resp_space(buf[i])) {
            i++;
        }
        if (append_frame(words, NULL, 0, buf + start, i - start)) {
            Py_DECREF(words);
            return NULL;
        }
    }
    *end = stop + 1;
    return words;
}

static PyObject *
resp_command(const char *buf, Py_ssize_t n, Py_ssize_t pos, long long max_bulk,
             long long max_array, long long max_inline, Py_ssize_t *end)
{
    Py_ssize_t first;
    if (pos >= n) {
        return NULL;
    }
    if (buf[pos] != '*') {
        return resp_inline(buf, n, pos, max_inline, end);
    }
    long long count = resp_number(buf, pos + 1, n, &first);
    if (count < 1 || count > max_array) {
        return NULL;
    }
    Py_ssize_t j = first;
    for (long long k = 0; k < count; k++) {
        Py_ssize_t body;
        if (j >= n || buf[j] != '$') {
            return NULL;
        }
        long long size = resp_number(buf, j + 1, n, &body);
        if (size < 0 || size > max_bulk || size > (long long)(n - body) - 2) {
            return NULL;
        }
        if (buf[body + size] != '\r' || buf[body + size + 1] != '\n') {
            return NULL;
        }
        j = body + (Py_ssize_t)size + 2;
    }
    PyObject *args = PyList_New((Py_ssize_t)count);
    if (args == NULL) {
        return NULL;
    }
    j = first;
    for (Py_ssize_t k = 0; k < (Py_ssize_t)count; k++) {
        Py_ssize_t body;
        long long size = resp_number(buf, j + 1, n, &body);
        PyObject *arg = PyBytes_FromStringAndSize(buf + body, (Py_ssize_t)size);
        if (arg == NULL) {
            Py_DECREF(args);
            return NULL;
        }
        PyList_SET_ITEM(args, k, arg);
        j = body + (Py_ssize_t)size + 2;
    }
    *end = j;
    return args;
}

static int
resp_limits(PyObject *const *args, Py_ssize_t *pos, long long *max_bulk, long long *max_array,
            long long *max_inline)
{
    *max_inline = PyLong_AsLongLong(args[4]);
    if (*max_inline == -1 && PyErr_Occurred()) {
        return -1;
    }
    *max_bulk = PyLong_AsLongLong(args[2]);
    if (*max_bulk == -1 && PyErr_Occurred()) {
        return -1;
    }
    *max_array = PyLong_AsLongLong(args[3]);
    if (*max_array == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (get_ssize(args[1], pos)) {
        return -1;
    }
    if (*pos < 0 || *max_bulk < 0 || *max_array < 0 || *max_inline < 0) {
        PyErr_SetString(PyExc_ValueError, "RESP cut: parameter out of range");
        return -1;
    }
    return 0;
}

/* cut_resp(src, pos, max_bulk, max_array, max_inline, max_frames, frames, ends) -> pos
 *   appends each command cut to frames and the position just after it to ends */
static PyObject *
cut_resp(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, max_frames;
    long long max_bulk, max_array, max_inline;
    if (nargs != 8 || !PyBytes_Check(args[0]) || !PyList_Check(args[6]) ||
        !PyList_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError,
                        "cut_resp(src: bytes, pos, max_bulk, max_array, max_inline, max_frames, "
                        "frames: list, ends: list)");
        return NULL;
    }
    if (resp_limits(args, &pos, &max_bulk, &max_array, &max_inline) ||
        get_ssize(args[5], &max_frames)) {
        return NULL;
    }
    const char *buf = PyBytes_AS_STRING(args[0]);
    Py_ssize_t n = PyBytes_GET_SIZE(args[0]);
    for (Py_ssize_t taken = 0; taken < max_frames; taken++) {
        Py_ssize_t end;
        PyObject *command = resp_command(buf, n, pos, max_bulk, max_array, max_inline, &end);
        if (command == NULL) {
            if (PyErr_Occurred()) {
                return NULL;
            }
            break;
        }
        int rc = PyList_Append(args[6], command);
        Py_DECREF(command);
        if (rc) {
            return NULL;
        }
        PyObject *after = PyLong_FromSsize_t(end);
        if (after == NULL) {
            return NULL;
        }
        rc = PyList_Append(args[7], after);
        Py_DECREF(after);
        if (rc) {
            return NULL;
        }
        pos = end;
    }
    return PyLong_FromSsize_t(pos);
}

/* one_resp(src, pos, max_bulk, max_array, max_inline) -> (command, end) or None */
static PyObject *
one_resp(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t pos, end;
    long long max_bulk, max_array, max_inline;
    if (nargs != 5 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError,
                        "one_resp(src: bytes, pos, max_bulk, max_array, max_inline)");
        return NULL;
    }
    if (resp_limits(args, &pos, &max_bulk, &max_array, &max_inline)) {
        return NULL;
    }
    PyObject *command = resp_command(PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), pos,
                                     max_bulk, max_array, max_inline, &end);
    if (command == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(Nn)", command, end);
}

static PyMethodDef methods[] = {
    {"cut_lines", (PyCFunction)(void (*)(void))cut_lines, METH_FASTCALL,
     "Cut the complete lines within the limit at the front of src."},
    {"cut_prefixed", (PyCFunction)(void (*)(void))cut_prefixed, METH_FASTCALL,
     "Cut the complete, in-limit length-prefixed frames at the front of src."},
    {"cut_netstring", (PyCFunction)(void (*)(void))cut_netstring, METH_FASTCALL,
     "Cut the complete, well-formed netstrings at the front of src."},
    {"cut_resp", (PyCFunction)(void (*)(void))cut_resp, METH_FASTCALL,
     "Cut the whole RESP command arrays at the front of src."},
    {"one_resp", (PyCFunction)(void (*)(void))one_resp, METH_FASTCALL,
     "The whole RESP command array at src[pos], with the position after it, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "statewire.framing._speedups",
    "Optional C accelerator for statewire's line, netstring, length-prefixed and RESP decoders.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
