/* Optional C accelerator for the common HTTP/1.1 request head: a well-formed request line
 * and a field section of well-formed lines.
 *
 * request_line(frame, max_length) reads a request line cut at its LF (frame ends with its
 * CR) in the common form: a token method, one SP, an origin-form target of VCHARs
 * starting with "/" and holding no "#", one SP, "HTTP/1.1" or "HTTP/1.0", the CR; the
 * method is not CONNECT; frame is at most max_length + 1 bytes. It returns (method,
 * target, (major, minor)), or None for anything else.
 *
 * field_section(data, max_bytes, max_fields) reads the field section at the start of
 * data (the bytes right after a request line's LF): field lines "name:value" with a token
 * name, a value of VCHAR, obs-text, SP and HTAB (its surrounding SP and HTAB dropped),
 * each ended by CRLF, then the blank line (CRLF); at most max_fields fields and max_bytes
 * bytes, blank line included. It returns (fields, size): the (name, value) pairs as sent
 * and the bytes the section took, or None for anything else (no blank line in data, a
 * line of another form, a limit passed).
 *
 * None is never a verdict: the Python caller then reads the bytes by the grammar
 * (grammars.http1), which accepts or refuses them and says why. Wherever these return
 * a result, it is the grammar's result (tests/test_http1_speedups.py holds them equal).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

/* RFC 9110 tchar */
static unsigned char is_tchar[256];
/* a field value's bytes: VCHAR, obs-text, SP, HTAB */
static unsigned char is_value[256];
/* a request target's bytes: VCHAR */
static unsigned char is_target[256];

static PyObject *version_11;
static PyObject *version_10;

static void
fill_tables(void)
{
    const char *specials = "!#$%&'*+-.^_`|~";
    for (int c = 0; c < 256; c++) {
        is_tchar[c] = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                      (c >= 'A' && c <= 'Z') || (c != 0 && strchr(specials, c) != NULL);
        is_value[c] = (c >= 0x21 && c <= 0x7E) || c >= 0x80 || c == ' ' || c == '\t';
        is_target[c] = c >= 0x21 && c <= 0x7E;
    }
}

/* bytes, then `count` integer limits (anything with __index__) into `limits`: the
 * arguments of both functions; 0, or -1 with an exception set. */
static int
arguments(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t count, Py_ssize_t *limits,
          const char *usage)
{
    if (nargs != count + 1 || !PyBytes_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        limits[i] = PyNumber_AsSsize_t(args[i + 1], PyExc_OverflowError);
        if (limits[i] == -1 && PyErr_Occurred()) {
            return -1;
        }
    }
    return 0;
}

static PyObject *
request_line(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t max_length;
    if (arguments(args, nargs, 1, &max_length,
                  "request_line(frame: bytes, max_length: int)") < 0) {
        return NULL;
    }
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (size < 2 || size - 1 > max_length || s[size - 1] != '\r') {
        Py_RETURN_NONE;
    }
    Py_ssize_t end = size - 1; /* the CR */
    Py_ssize_t at = 0;
    while (at < end && is_tchar[s[at]]) {
        at++;
    }
    Py_ssize_t method_end = at;
    if (method_end == 0 || at >= end || s[at] != ' ') {
        Py_RETURN_NONE;
    }
    if (method_end == 7 && memcmp(s, "CONNECT", 7) == 0) {
        Py_RETURN_NONE; /* the authority-form: the grammar's */
    }
    Py_ssize_t target_start = ++at;
    if (at >= end || s[at] != '/') {
        Py_RETURN_NONE; /* another form than the origin-form: the grammar's */
    }
    while (at < end && is_target[s[at]] && s[at] != '#') {
        at++;
    }
    Py_ssize_t target_end = at;
    if (at >= end || s[at] != ' ' || end - at - 1 != 8) {
        Py_RETURN_NONE;
    }
    const unsigned char *version = s + at + 1;
    PyObject *known;
    if (memcmp(version, "HTTP/1.1", 8) == 0) {
        known = version_11;
    }
    else if (memcmp(version, "HTTP/1.0", 8) == 0) {
        known = version_10;
    }
    else {
        Py_RETURN_NONE;
    }
    PyObject *method = PyBytes_FromStringAndSize((const char *)s, method_end);
    if (method == NULL) {
        return NULL;
    }
    PyObject *target = PyBytes_FromStringAndSize((const char *)s + target_start,
                                                 target_end - target_start);
    if (target == NULL) {
        Py_DECREF(method);
        return NULL;
    }
    PyObject *result = PyTuple_New(3);
    if (result == NULL) {
        Py_DECREF(method);
        Py_DECREF(target);
        return NULL;
    }
    Py_INCREF(known);
    PyTuple_SET_ITEM(result, 0, method);
    PyTuple_SET_ITEM(result, 1, target);
    PyTuple_SET_ITEM(result, 2, known);
    return result;
}

/* One field line starting at `at` (not the blank line): its name and value appended to
 * fields as a pair; the position after its LF, 0 for a line of another form, -1 on an
 * error. */
static Py_ssize_t
field_line(const unsigned char *s, Py_ssize_t at, Py_ssize_t size, PyObject *fields)
{
    Py_ssize_t start = at;
    while (at < size && is_tchar[s[at]]) {
        at++;
    }
    if (at == start || at >= size || s[at] != ':') {
        return 0;
    }
    Py_ssize_t name_end = at++;
    while (at < size && (s[at] == ' ' || s[at] == '\t')) {
        at++;
    }
    Py_ssize_t value_start = at;
    while (at < size && is_value[s[at]]) {
        at++;
    }
    /* the line ends here: CR LF */
    if (at + 1 >= size || s[at] != '\r' || s[at + 1] != '\n') {
        return 0;
    }
    Py_ssize_t value_end = at;
    while (value_end > value_start && (s[value_end - 1] == ' ' || s[value_end - 1] == '\t')) {
        value_end--;
    }
    PyObject *pair = Py_BuildValue("(y#y#)", (const char *)s + start, name_end - start,
                                   (const char *)s + value_start, value_end - value_start);
    if (pair == NULL) {
        return -1;
    }
    int failed = PyList_Append(fields, pair);
    Py_DECREF(pair);
    return failed ? -1 : at + 2;
}

static PyObject *
field_section(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    Py_ssize_t limits[2];
    if (arguments(args, nargs, 2, limits,
                  "field_section(data: bytes, max_bytes: int, max_fields: int)") < 0) {
        return NULL;
    }
    Py_ssize_t max_bytes = limits[0], max_fields = limits[1];
    const unsigned char *s = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    Py_ssize_t size = PyBytes_GET_SIZE(args[0]);
    if (size > max_bytes) {
        size = max_bytes; /* a section reaching past the limit is the grammar's to refuse */
    }
    PyObject *fields = PyList_New(0);
    if (fields == NULL) {
        return NULL;
    }
    Py_ssize_t at = 0;
    for (;;) {
        if (at + 1 < size && s[at] == '\r' && s[at + 1] == '\n') {
            return Py_BuildValue("(Nn)", fields, at + 2);
        }
        if (PyList_GET_SIZE(fields) >= max_fields) {
            break; /* one more field: the grammar refuses it */
        }
        Py_ssize_t next = field_line(s, at, size, fields);
        if (next < 0) {
            Py_DECREF(fields);
            return NULL;
        }
        if (next == 0) {
            break;
        }
        at = next;
    }
    Py_DECREF(fields);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"request_line", (PyCFunction)(void (*)(void))request_line, METH_FASTCALL,
     "A common request line cut at its LF: (method, target, version) or None."},
    {"field_section", (PyCFunction)(void (*)(void))field_section, METH_FASTCALL,
     "A common field section at the start of data: (fields, size) or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "statewire.protocols._http1_speedups",
    "Optional C accelerator for the common HTTP/1.1 request head.", -1, methods,
};

PyMODINIT_FUNC
PyInit__http1_speedups(void)
{
    fill_tables();
    version_11 = Py_BuildValue("(ii)", 1, 1);
    version_10 = Py_BuildValue("(ii)", 1, 0);
    if (version_11 == NULL || version_10 == NULL) {
        return NULL;
    }
    return PyModule_Create(&module);
}
