;; A Spin HTTP guest that answers first and works afterwards, as the component will
;; ("202, then keep working"): it sets a 200 response and writes "early\n" of its body,
;; then reads the request body to its end, then finishes the response body, then does
;; what `{AFTER}` says (see tests/up_early_answer.rs): return, trap, or loop until
;; killed. The response body stays open while the request body is read because hyper's
;; HTTP/1 server (host-sim's, and Spin's) stops reading a request body once the
;; response is complete. Built into a component with early_answer.wit.
(module
  (import "wasi:http/types@0.2.0" "[constructor]fields" (func $fields (result i32)))
  (import "wasi:http/types@0.2.0" "[constructor]outgoing-response" (func $response (param i32) (result i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-response.body" (func $response-body (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]outgoing-body.write" (func $body-write (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]outgoing-body.finish" (func $body-finish (param i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[static]response-outparam.set"
    (func $set (param i32 i32 i32 i32 i64 i32 i32 i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-request.consume" (func $consume (param i32 i32)))
  (import "wasi:http/types@0.2.0" "[method]incoming-body.stream" (func $body-stream (param i32 i32)))
  (import "wasi:io/streams@0.2.0" "[method]output-stream.blocking-write-and-flush" (func $write (param i32 i32 i32 i32)))
  (import "wasi:io/streams@0.2.0" "[resource-drop]output-stream" (func $drop-output (param i32)))
  (import "wasi:io/streams@0.2.0" "[method]input-stream.blocking-skip" (func $skip (param i32 i64 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "early\n")
  ;; Results come back at 64 (a result's tag, then its payload at 68, or 72 for a u64).
  ;; Memory the host asks for (an error's strings) is bumped from 1024 up: the
  ;; instance serves one request.
  (global $heap (mut i32) (i32.const 1024))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at
      (i32.and (i32.add (global.get $heap) (i32.sub (local.get 2) (i32.const 1)))
               (i32.sub (i32.const 0) (local.get 2))))
    (global.set $heap (i32.add (local.get $at) (local.get 3)))
    (local.get $at))
  (func (export "wasi:http/incoming-handler@0.2.0#handle") (param $request i32) (param $out i32)
    (local $response i32) (local $body i32) (local $stream i32)
    (local.set $response (call $response (call $fields)))
    (call $response-body (local.get $response) (i32.const 64))
    (local.set $body (i32.load (i32.const 68)))
    ;; ok(response): the response's head goes out now.
    (call $set (local.get $out) (i32.const 0) (local.get $response)
      (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0))
    (call $body-write (local.get $body) (i32.const 64))
    (local.set $stream (i32.load (i32.const 68)))
    (call $write (local.get $stream) (i32.const 0) (i32.const 6) (i32.const 64))
    (call $drop-output (local.get $stream))
    (call $read-request-body (local.get $request))
    (call $body-finish (local.get $body) (i32.const 0) (i32.const 0) (i32.const 64))
    {AFTER})
  ;; Reads the request body to its end (skipping it: nothing to allocate).
  (func $read-request-body (param $request i32)
    (local $in i32)
    (call $consume (local.get $request) (i32.const 64))
    (call $body-stream (i32.load (i32.const 68)) (i32.const 64))
    (local.set $in (i32.load (i32.const 68)))
    (block $end
      (loop $more
        (call $skip (local.get $in) (i64.const 65536) (i32.const 64))
        ;; err(closed): the body has ended.
        (br_if $end (i32.load8_u (i32.const 64)))
        (br $more)))))
