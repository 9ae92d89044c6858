/*
 * avm_native.h: the C ABI of avm native plugins, version 1.
 *
 * A native plugin is a shared library (.so / .dylib / .dll) mounted with
 *
 *     [[mounts]]
 *     pattern = "/native/**"
 *     type = "native"
 *     options = { library = "/path/to/libplugin.so", max_output = 1048576 }
 *
 * Native plugins run inside the avm process with its full rights: they are trusted code,
 * unlike WASM plugins, which are sandboxed. Load only libraries you would run yourself.
 *
 * Conventions
 *   - Every string is UTF-8 and NUL-terminated.
 *   - The host owns the strings it passes in; they are valid only during the call.
 *   - The plugin owns every string it returns through `out` until the host hands it back to
 *     avm_native_free (the host always does, on success and on error, and copies it first).
 *   - Functions may be called from several threads at once: a plugin must be thread-safe
 *     (lock internally where it keeps state).
 *   - Nothing may unwind out of these functions (C++ exceptions, Rust panics): catch them
 *     and return error code 14.
 *   - Calls cannot be interrupted: a plugin that blocks, blocks its caller.
 *
 * Requests
 *   `request_json` is a JSON object:
 *     {"path": "/native/hello/bob",          normalised full path
 *      "suffix": null,                       or "meta" for /path:meta
 *      "query": {"key": "value"},            decoded query; a repeated key keeps its first value
 *      "captures": {"name": "bob", "**": "hello/bob"},   captures of the mount pattern
 *      "caller": {"type": "agent", "id": "alice"},       or {"type": "operator"}
 *      "mount": "/native/**"}                the mount pattern
 *   Unknown keys may be added in later minor revisions of version 1: ignore them.
 *
 * Results
 *   0 is success: *out holds the result (NULL counts as "").
 *   Non-zero is an error: *out holds a one-line lowercase message (or NULL). Codes 1..14 are
 *   avm's error kinds; any other code is reported as internal.
 *   The host refuses results longer than the mount's max_output (default 1 MiB).
 */
#ifndef AVM_NATIVE_H
#define AVM_NATIVE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AVM_NATIVE_ABI_VERSION 1

/* Error codes: avm's ErrorKind in declaration order. */
enum avm_native_error {
    AVM_NATIVE_OK = 0,
    AVM_NATIVE_NOT_FOUND = 1,
    AVM_NATIVE_NOT_A_DIRECTORY = 2,
    AVM_NATIVE_IS_A_DIRECTORY = 3,
    AVM_NATIVE_ALREADY_EXISTS = 4,
    AVM_NATIVE_NOT_EMPTY = 5,
    AVM_NATIVE_PERMISSION_DENIED = 6,
    AVM_NATIVE_READ_ONLY = 7,
    AVM_NATIVE_INVALID_INPUT = 8,
    AVM_NATIVE_UNSUPPORTED = 9,
    AVM_NATIVE_TOO_LARGE = 10,
    AVM_NATIVE_BUSY = 11,
    AVM_NATIVE_TIMED_OUT = 12,
    AVM_NATIVE_UNAVAILABLE = 13,
    AVM_NATIVE_INTERNAL = 14
};

/* Required. Must return AVM_NATIVE_ABI_VERSION; the host checks it before anything else. */
uint32_t avm_native_abi_version(void);

/* Required. One line describing the plugin; a static string the host never frees. */
const char *avm_native_describe(void);

/* Required. Reads request.path (and request.suffix). The host also uses it for stat: a
 * successful read is a file of that size. */
int32_t avm_native_read(const char *request_json, char **out);

/* Optional. Writes `content` to request.path; *out is the content as it now stands (or a
 * short report). Without this symbol the mount is read-only. */
int32_t avm_native_write(const char *request_json, const char *content, char **out);

/* Optional. Lists the children of request.path: *out is a JSON array of names, one path
 * segment each, a directory's name ending in "/" (e.g. ["a.md", "sub/"]). Also answers stat
 * for directories: a path that reads as not-found but lists is a directory. */
int32_t avm_native_list(const char *request_json, char **out);

/* Required. Frees a string returned through `out`. */
void avm_native_free(char *s);

#ifdef __cplusplus
}
#endif

#endif /* AVM_NATIVE_H */
