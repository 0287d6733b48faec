/*
 * callWithSignalsBlocked(fn): calls fn() with every blockable signal blocked in the calling thread
 * and restores the mask afterwards. A thread created meanwhile inherits the blocked mask for life.
 *
 * Why: fuse-native starts its FUSE loop thread from the main thread, and libfuse's workers inherit
 * that thread's mask, so process-directed signals (SIGCHLD above all) can land on them. libfuse
 * cancels its workers when a mount goes away; a SIGCHLD arriving in a worker during that
 * cancellation runs libuv's signal handler there, which takes libuv's process-wide signal lock and
 * is cancelled before it gives it back. The next signal the main thread handles then blocks it
 * forever. Threads that block every signal never run the handler.
 */
#define NAPI_VERSION 8
#include <node_api.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>

static napi_value call_with_signals_blocked(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  napi_valuetype type = napi_undefined;
  if (argc < 1 || napi_typeof(env, argv[0], &type) != napi_ok || type != napi_function) {
    napi_throw_type_error(env, NULL, "callWithSignalsBlocked expects a function");
    return NULL;
  }
  sigset_t all, previous;
  sigfillset(&all);
  if (pthread_sigmask(SIG_BLOCK, &all, &previous) != 0) {
    napi_throw_error(env, NULL, "pthread_sigmask failed");
    return NULL;
  }
  napi_value global, result = NULL;
  napi_get_global(env, &global);
  napi_status status = napi_call_function(env, global, argv[0], 0, NULL, &result);
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  /* A JavaScript exception thrown by fn stays pending and propagates to the caller. */
  return status == napi_ok ? result : NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "callWithSignalsBlocked", NAPI_AUTO_LENGTH, call_with_signals_blocked, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "callWithSignalsBlocked", fn) != napi_ok) return NULL;
  return exports;
}
