;; WASI 0.2 (preview2) implemented on top of `wasi_snapshot_preview1`.
;;
;; This core module is "just another provider of imports" for the lowering:
;; it EXPORTS the core-level WASI 0.2 functions that a `wasm32-wasip2` main
;; module imports (canonical-ABI flat signatures, utf-8 strings), named
;; `<interface without version>#<field>`, and IMPORTS the main module's memory
;; and `cabi_realloc` plus the preview1 functions it is built on.
;; The exact contract is written down in `docs/LOWERING.md`, section `## WASI`.
;;
;; It owns no data segment, no stack and no table: once merged, nothing of it
;; sits at a fixed address of the shared memory. Its state (scratch space and
;; the handle table) lives in two pages it takes with `memory.grow` on first
;; use; the address is kept in a global. Results the canonical ABI allocates
;; (lists, strings) come from the guest's `cabi_realloc`, one allocation per
;; list and per string, because the guest frees each of them separately.
;;
;; Handles of every resource kind share one table (index 0 is never used,
;; freed slots go on a free list); a handle of the wrong kind, a stale handle
;; or a full table traps.

(module
  (import "__main_module__" "memory" (memory 0))
  (import "__main_module__" "cabi_realloc"
    (func $realloc (param i32 i32 i32 i32) (result i32)))

  (import "wasi_snapshot_preview1" "args_get" (func $args_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_res_get" (func $clock_res_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_advise" (func $fd_advise (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_datasync" (func $fd_datasync (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_get" (func $fd_filestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_size" (func $fd_filestat_set_size (param i32 i64) (result i32)))
  (import "wasi_snapshot_preview1" "fd_filestat_set_times" (func $fd_filestat_set_times (param i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pread" (func $fd_pread (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_dir_name" (func $fd_prestat_dir_name (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_pwrite" (func $fd_pwrite (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_sync" (func $fd_sync (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_create_directory" (func $path_create_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get" (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_set_times"
    (func $path_filestat_set_times (param i32 i32 i32 i32 i64 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_link" (func $path_link (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_readlink" (func $path_readlink (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_remove_directory" (func $path_remove_directory (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_rename" (func $path_rename (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_symlink" (func $path_symlink (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_unlink_file" (func $path_unlink_file (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))

  ;; ---------------------------------------------------------------- state
  ;; Region layout (offsets from $base, two pages):
  ;;   0      scratch for preview1 out-parameters (512 bytes)
  ;;   512    fd_readdir buffer (4096 bytes)
  ;;   8192   handle table: 7680 slots of 16 bytes
  ;; Slot: +0 kind (u8), +1 mode (u8), +2 flags (u8), +4 fd or errno (u32),
  ;;       +8 stream offset / pollable deadline / readdir cookie (u64).
  ;; A free slot has kind 0 and keeps the next free index at +4.
  (global $base (mut i32) (i32.const 0))
  (global $free_head (mut i32) (i32.const 0))
  (global $next_unused (mut i32) (i32.const 1))
  (global $temp (mut i32) (i32.const 0))
  (global $temp_size (mut i32) (i32.const 0))

  ;; handle kinds
  ;;   1 input-stream   2 output-stream   3 pollable   4 descriptor
  ;;   5 error          6 directory-entry-stream       7 terminal-input/output
  ;; stream modes: 0 stdio (fd_read/fd_write), 1 positional (pread/pwrite at +8),
  ;;   2 append (seek to end, then fd_write)
  ;; pollable modes: 0 always ready, 1 ready at the monotonic deadline at +8
  ;; descriptor flags: bit 0 = preopen (dropping it does not close the fd)

  (func $region (result i32)
    (local $page i32)
    (if (i32.eqz (global.get $base))
      (then
        (local.set $page (memory.grow (i32.const 2)))
        (if (i32.eq (local.get $page) (i32.const -1)) (then unreachable))
        (global.set $base (i32.shl (local.get $page) (i32.const 16)))))
    (global.get $base))

  (func $scratch (result i32) (call $region))
  (func $dirbuf (result i32) (i32.add (call $region) (i32.const 512)))

  ;; A temporary buffer of at least $size bytes, valid until the next call.
  (func $temp_buffer (param $size i32) (result i32)
    (local $pages i32) (local $page i32)
    (if (i32.gt_u (local.get $size) (global.get $temp_size))
      (then
        (local.set $pages (i32.shr_u (i32.add (local.get $size) (i32.const 65535)) (i32.const 16)))
        (local.set $page (memory.grow (local.get $pages)))
        (if (i32.eq (local.get $page) (i32.const -1)) (then unreachable))
        (global.set $temp (i32.shl (local.get $page) (i32.const 16)))
        (global.set $temp_size (i32.shl (local.get $pages) (i32.const 16)))))
    (global.get $temp))

  (func $slot_addr (param $handle i32) (result i32)
    (i32.add (i32.add (call $region) (i32.const 8192)) (i32.shl (local.get $handle) (i32.const 4))))

  (func $new_handle (param $kind i32) (param $mode i32) (param $flags i32) (param $fd i32) (param $wide i64) (result i32)
    (local $handle i32) (local $slot i32)
    (if (global.get $free_head)
      (then
        (local.set $handle (global.get $free_head))
        (global.set $free_head (i32.load offset=4 (call $slot_addr (local.get $handle)))))
      (else
        (local.set $handle (global.get $next_unused))
        (if (i32.ge_u (local.get $handle) (i32.const 7680)) (then unreachable))
        (global.set $next_unused (i32.add (local.get $handle) (i32.const 1)))))
    (local.set $slot (call $slot_addr (local.get $handle)))
    (i32.store8 (local.get $slot) (local.get $kind))
    (i32.store8 offset=1 (local.get $slot) (local.get $mode))
    (i32.store8 offset=2 (local.get $slot) (local.get $flags))
    (i32.store offset=4 (local.get $slot) (local.get $fd))
    (i64.store offset=8 (local.get $slot) (local.get $wide))
    (local.get $handle))

  ;; The slot of a live handle of kind $kind; traps otherwise.
  (func $slot (param $handle i32) (param $kind i32) (result i32)
    (local $slot i32)
    (if (i32.or (i32.eqz (local.get $handle))
                (i32.ge_u (local.get $handle) (global.get $next_unused)))
      (then unreachable))
    (local.set $slot (call $slot_addr (local.get $handle)))
    (if (i32.ne (i32.load8_u (local.get $slot)) (local.get $kind)) (then unreachable))
    (local.get $slot))

  (func $fd_of (param $handle i32) (param $kind i32) (result i32)
    (i32.load offset=4 (call $slot (local.get $handle) (local.get $kind))))

  (func $drop_handle (param $handle i32) (param $kind i32)
    (local $slot i32)
    (local.set $slot (call $slot (local.get $handle) (local.get $kind)))
    (i32.store8 (local.get $slot) (i32.const 0))
    (i32.store offset=4 (local.get $slot) (global.get $free_head))
    (global.set $free_head (local.get $handle)))

  ;; ------------------------------------------------------------ helpers
  (func $copy_out (param $src i32) (param $len i32) (result i32)
    (local $dst i32)
    (local.set $dst (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len)))
    (memory.copy (local.get $dst) (local.get $src) (local.get $len))
    (local.get $dst))

  (func $strlen (param $ptr i32) (result i32)
    (local $end i32)
    (local.set $end (local.get $ptr))
    (block $done
      (loop $scan
        (br_if $done (i32.eqz (i32.load8_u (local.get $end))))
        (local.set $end (i32.add (local.get $end) (i32.const 1)))
        (br $scan)))
    (i32.sub (local.get $end) (local.get $ptr)))

  (func $monotonic_now (result i64)
    (if (call $clock_time_get (i32.const 1) (i64.const 1) (call $scratch)) (then unreachable))
    (i64.load (call $scratch)))

  (func $store_datetime (param $dst i32) (param $nanos i64)
    (i64.store (local.get $dst) (i64.div_u (local.get $nanos) (i64.const 1000000000)))
    (i32.store offset=8 (local.get $dst)
      (i32.wrap_i64 (i64.rem_u (local.get $nanos) (i64.const 1000000000)))))

  ;; preview1 errno -> wasi:filesystem/types error-code
  (func $error_code (param $errno i32) (result i32)
    (local $e i32)
    (local.set $e (local.get $errno))
    (if (i32.eq (local.get $e) (i32.const 2)) (then (return (i32.const 0))))    ;; acces -> access
    (if (i32.eq (local.get $e) (i32.const 6)) (then (return (i32.const 1))))    ;; again -> would-block
    (if (i32.eq (local.get $e) (i32.const 7)) (then (return (i32.const 2))))    ;; already
    (if (i32.eq (local.get $e) (i32.const 8)) (then (return (i32.const 3))))    ;; badf -> bad-descriptor
    (if (i32.eq (local.get $e) (i32.const 10)) (then (return (i32.const 4))))   ;; busy
    (if (i32.eq (local.get $e) (i32.const 16)) (then (return (i32.const 5))))   ;; deadlk -> deadlock
    (if (i32.eq (local.get $e) (i32.const 19)) (then (return (i32.const 6))))   ;; dquot -> quota
    (if (i32.eq (local.get $e) (i32.const 20)) (then (return (i32.const 7))))   ;; exist
    (if (i32.eq (local.get $e) (i32.const 22)) (then (return (i32.const 8))))   ;; fbig -> file-too-large
    (if (i32.eq (local.get $e) (i32.const 25)) (then (return (i32.const 9))))   ;; ilseq
    (if (i32.eq (local.get $e) (i32.const 26)) (then (return (i32.const 10))))  ;; inprogress
    (if (i32.eq (local.get $e) (i32.const 27)) (then (return (i32.const 11))))  ;; intr
    (if (i32.eq (local.get $e) (i32.const 28)) (then (return (i32.const 12))))  ;; inval
    (if (i32.eq (local.get $e) (i32.const 29)) (then (return (i32.const 13))))  ;; io
    (if (i32.eq (local.get $e) (i32.const 31)) (then (return (i32.const 14))))  ;; isdir
    (if (i32.eq (local.get $e) (i32.const 32)) (then (return (i32.const 15))))  ;; loop
    (if (i32.eq (local.get $e) (i32.const 34)) (then (return (i32.const 16))))  ;; mlink -> too-many-links
    (if (i32.eq (local.get $e) (i32.const 35)) (then (return (i32.const 17))))  ;; msgsize
    (if (i32.eq (local.get $e) (i32.const 37)) (then (return (i32.const 18))))  ;; nametoolong
    (if (i32.eq (local.get $e) (i32.const 43)) (then (return (i32.const 19))))  ;; nodev
    (if (i32.eq (local.get $e) (i32.const 44)) (then (return (i32.const 20))))  ;; noent
    (if (i32.eq (local.get $e) (i32.const 46)) (then (return (i32.const 21))))  ;; nolck
    (if (i32.eq (local.get $e) (i32.const 48)) (then (return (i32.const 22))))  ;; nomem
    (if (i32.eq (local.get $e) (i32.const 49)) (then (return (i32.const 23))))  ;; nospc
    (if (i32.eq (local.get $e) (i32.const 53)) (then (return (i32.const 24))))  ;; notdir
    (if (i32.eq (local.get $e) (i32.const 54)) (then (return (i32.const 25))))  ;; notempty
    (if (i32.eq (local.get $e) (i32.const 55)) (then (return (i32.const 26))))  ;; notrecoverable
    (if (i32.eq (local.get $e) (i32.const 57)) (then (return (i32.const 27))))  ;; notsup -> unsupported
    (if (i32.eq (local.get $e) (i32.const 51)) (then (return (i32.const 27))))  ;; nosys -> unsupported
    (if (i32.eq (local.get $e) (i32.const 58)) (then (return (i32.const 28))))  ;; notty -> no-tty
    (if (i32.eq (local.get $e) (i32.const 59)) (then (return (i32.const 29))))  ;; nxio -> no-such-device
    (if (i32.eq (local.get $e) (i32.const 60)) (then (return (i32.const 30))))  ;; overflow
    (if (i32.eq (local.get $e) (i32.const 62)) (then (return (i32.const 31))))  ;; perm -> not-permitted
    (if (i32.eq (local.get $e) (i32.const 75)) (then (return (i32.const 31))))  ;; notcapable -> not-permitted
    (if (i32.eq (local.get $e) (i32.const 63)) (then (return (i32.const 32))))  ;; pipe
    (if (i32.eq (local.get $e) (i32.const 68)) (then (return (i32.const 33))))  ;; rofs -> read-only
    (if (i32.eq (local.get $e) (i32.const 69)) (then (return (i32.const 34))))  ;; spipe -> invalid-seek
    (if (i32.eq (local.get $e) (i32.const 73)) (then (return (i32.const 35))))  ;; txtbsy
    (if (i32.eq (local.get $e) (i32.const 74)) (then (return (i32.const 36))))  ;; xdev
    (i32.const 13))                                                             ;; anything else -> io

  ;; result<_, error-code>-style failure: discriminant 1, code at $offset.
  (func $fail (param $ret i32) (param $offset i32) (param $errno i32)
    (i32.store8 (local.get $ret) (i32.const 1))
    (i32.store8 (i32.add (local.get $ret) (local.get $offset)) (call $error_code (local.get $errno))))

  ;; result<_, error-code> from a preview1 errno (payload offset 1).
  (func $unit_result (param $ret i32) (param $errno i32)
    (if (local.get $errno)
      (then (call $fail (local.get $ret) (i32.const 1) (local.get $errno)))
      (else (i32.store8 (local.get $ret) (i32.const 0)))))

  ;; Failure of a result<T, stream-error> whose stream-error sits at $offset:
  ;; EPIPE reads as `closed`, anything else as `last-operation-failed(error)`.
  (func $stream_fail (param $ret i32) (param $offset i32) (param $errno i32)
    (local $at i32)
    (local.set $at (i32.add (local.get $ret) (local.get $offset)))
    (i32.store8 (local.get $ret) (i32.const 1))
    (if (i32.eq (local.get $errno) (i32.const 63))
      (then (i32.store8 (local.get $at) (i32.const 1)))
      (else
        (i32.store8 (local.get $at) (i32.const 0))
        (i32.store offset=4 (local.get $at)
          (call $new_handle (i32.const 5) (i32.const 0) (i32.const 0) (local.get $errno) (i64.const 0))))))

  (func $stream_closed (param $ret i32) (param $offset i32)
    (i32.store8 (local.get $ret) (i32.const 1))
    (i32.store8 (i32.add (local.get $ret) (local.get $offset)) (i32.const 1)))

  ;; ------------------------------------------------------ wasi:cli/*
  (func $get_strings (param $ret i32) (param $pairs i32)
    (param $sizes_fn i32) ;; 0 = environment, 1 = arguments
    (local $count i32) (local $bytes i32) (local $buf i32) (local $list i32)
    (local $i i32) (local $s i32) (local $len i32) (local $key i32) (local $elem i32)
    (local $errno i32)
    (if (local.get $sizes_fn)
      (then (local.set $errno (call $args_sizes_get (call $scratch) (i32.add (call $scratch) (i32.const 4)))))
      (else (local.set $errno (call $environ_sizes_get (call $scratch) (i32.add (call $scratch) (i32.const 4))))))
    (if (local.get $errno) (then unreachable))
    (local.set $count (i32.load (call $scratch)))
    (local.set $bytes (i32.load offset=4 (call $scratch)))
    ;; Nothing to fetch (some hosts reject the call with an empty buffer).
    (if (i32.eqz (local.get $count))
      (then
        (i32.store (local.get $ret) (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 0)))
        (i32.store offset=4 (local.get $ret) (i32.const 0))
        (return)))
    (local.set $buf (call $temp_buffer (i32.add (i32.shl (local.get $count) (i32.const 2)) (local.get $bytes))))
    (if (local.get $sizes_fn)
      (then (local.set $errno (call $args_get (local.get $buf)
              (i32.add (local.get $buf) (i32.shl (local.get $count) (i32.const 2))))))
      (else (local.set $errno (call $environ_get (local.get $buf)
              (i32.add (local.get $buf) (i32.shl (local.get $count) (i32.const 2)))))))
    (if (local.get $errno) (then unreachable))
    (local.set $list (call $realloc (i32.const 0) (i32.const 0) (i32.const 4)
      (i32.shl (local.get $count) (select (i32.const 4) (i32.const 3) (local.get $pairs)))))
    (block $done
      (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $count)))
        (local.set $s (i32.load (i32.add (local.get $buf) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $len (call $strlen (local.get $s)))
        (local.set $elem (i32.add (local.get $list)
          (i32.shl (local.get $i) (select (i32.const 4) (i32.const 3) (local.get $pairs)))))
        (if (local.get $pairs)
          (then
            ;; split `KEY=VALUE` at the first `=`
            (local.set $key (i32.const 0))
            (block $found
              (loop $scan
                (br_if $found (i32.ge_u (local.get $key) (local.get $len)))
                (br_if $found (i32.eq (i32.load8_u (i32.add (local.get $s) (local.get $key))) (i32.const 61)))
                (local.set $key (i32.add (local.get $key) (i32.const 1)))
                (br $scan)))
            (i32.store (local.get $elem) (call $copy_out (local.get $s) (local.get $key)))
            (i32.store offset=4 (local.get $elem) (local.get $key))
            (if (i32.lt_u (local.get $key) (local.get $len))
              (then (local.set $key (i32.add (local.get $key) (i32.const 1)))))
            (i32.store offset=8 (local.get $elem)
              (call $copy_out (i32.add (local.get $s) (local.get $key)) (i32.sub (local.get $len) (local.get $key))))
            (i32.store offset=12 (local.get $elem) (i32.sub (local.get $len) (local.get $key))))
          (else
            (i32.store (local.get $elem) (call $copy_out (local.get $s) (local.get $len)))
            (i32.store offset=4 (local.get $elem) (local.get $len))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each)))
    (i32.store (local.get $ret) (local.get $list))
    (i32.store offset=4 (local.get $ret) (local.get $count)))

  (func (export "wasi:cli/environment#get-environment") (param $ret i32)
    (call $get_strings (local.get $ret) (i32.const 1) (i32.const 0)))
  (func (export "wasi:cli/environment#get-arguments") (param $ret i32)
    (call $get_strings (local.get $ret) (i32.const 0) (i32.const 1)))
  (func (export "wasi:cli/environment#initial-cwd") (param $ret i32)
    (i32.store8 (local.get $ret) (i32.const 0)))

  (func (export "wasi:cli/exit#exit") (param $status i32)
    (call $proc_exit (select (i32.const 1) (i32.const 0) (local.get $status)))
    unreachable)
  (func (export "wasi:cli/exit#exit-with-code") (param $code i32)
    (call $proc_exit (i32.and (local.get $code) (i32.const 255)))
    unreachable)

  (func (export "wasi:cli/stdin#get-stdin") (result i32)
    (call $new_handle (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0) (i64.const 0)))
  (func (export "wasi:cli/stdout#get-stdout") (result i32)
    (call $new_handle (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 1) (i64.const 0)))
  (func (export "wasi:cli/stderr#get-stderr") (result i32)
    (call $new_handle (i32.const 2) (i32.const 0) (i32.const 0) (i32.const 2) (i64.const 0)))

  ;; Preview1 cannot tell whether stdio is a terminal: report none, which
  ;; guests read as "not a terminal".
  (func (export "wasi:cli/terminal-stdin#get-terminal-stdin") (param $ret i32)
    (i32.store8 (local.get $ret) (i32.const 0)))
  (func (export "wasi:cli/terminal-stdout#get-terminal-stdout") (param $ret i32)
    (i32.store8 (local.get $ret) (i32.const 0)))
  (func (export "wasi:cli/terminal-stderr#get-terminal-stderr") (param $ret i32)
    (i32.store8 (local.get $ret) (i32.const 0)))
  (func (export "wasi:cli/terminal-input#[resource-drop]terminal-input") (param $h i32)
    (call $drop_handle (local.get $h) (i32.const 7)))
  (func (export "wasi:cli/terminal-output#[resource-drop]terminal-output") (param $h i32)
    (call $drop_handle (local.get $h) (i32.const 7)))

  ;; ------------------------------------------------------ wasi:io/error
  (func (export "wasi:io/error#[resource-drop]error") (param $h i32)
    (call $drop_handle (local.get $h) (i32.const 5)))

  ;; "errno N", N in decimal.
  (func (export "wasi:io/error#[method]error.to-debug-string") (param $h i32) (param $ret i32)
    (local $errno i32) (local $digits i32) (local $at i32) (local $out i32) (local $n i32)
    (local.set $errno (call $fd_of (local.get $h) (i32.const 5)))
    ;; digits, written backwards at the end of the scratch area
    (local.set $at (i32.add (call $scratch) (i32.const 64)))
    (local.set $n (local.get $errno))
    (loop $digit
      (local.set $at (i32.sub (local.get $at) (i32.const 1)))
      (i32.store8 (local.get $at) (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (i32.add (local.get $digits) (i32.const 6))))
    (i32.store8 (local.get $out) (i32.const 101))           ;; e
    (i32.store8 offset=1 (local.get $out) (i32.const 114))  ;; r
    (i32.store8 offset=2 (local.get $out) (i32.const 114))  ;; r
    (i32.store8 offset=3 (local.get $out) (i32.const 110))  ;; n
    (i32.store8 offset=4 (local.get $out) (i32.const 111))  ;; o
    (i32.store8 offset=5 (local.get $out) (i32.const 32))   ;; space
    (memory.copy (i32.add (local.get $out) (i32.const 6)) (local.get $at) (local.get $digits))
    (i32.store (local.get $ret) (local.get $out))
    (i32.store offset=4 (local.get $ret) (i32.add (local.get $digits) (i32.const 6))))

  ;; ------------------------------------------------------ wasi:io/poll
  (func $new_pollable (param $mode i32) (param $deadline i64) (result i32)
    (call $new_handle (i32.const 3) (local.get $mode) (i32.const 0) (i32.const 0) (local.get $deadline)))

  (func $pollable_ready (param $h i32) (result i32)
    (local $slot i32)
    (local.set $slot (call $slot (local.get $h) (i32.const 3)))
    (if (i32.eqz (i32.load8_u offset=1 (local.get $slot))) (then (return (i32.const 1))))
    (i64.ge_u (call $monotonic_now) (i64.load offset=8 (local.get $slot))))

  ;; Sleep until the monotonic clock reaches $deadline. A relative clock
  ;; subscription is the one every preview1 host supports; some hosts (node)
  ;; round it down to whole milliseconds, so the timeout is rounded up and
  ;; the wait repeats until the deadline has really passed.
  (func $sleep_until (param $deadline i64)
    (local $now i64) (local $sub i32) (local $wait i64)
    (local.set $sub (call $scratch))
    (loop $again
      (local.set $now (call $monotonic_now))
      (if (i64.ge_u (local.get $now) (local.get $deadline)) (then (return)))
      (local.set $wait (i64.mul (i64.div_u (i64.add (i64.sub (local.get $deadline) (local.get $now))
                                                    (i64.const 999999))
                                           (i64.const 1000000))
                                (i64.const 1000000)))
      (memory.fill (local.get $sub) (i32.const 0) (i32.const 48))
      ;; tag 0 = clock; clock id 1 = monotonic; flags 0 = relative
      (i32.store offset=16 (local.get $sub) (i32.const 1))
      (i64.store offset=24 (local.get $sub) (local.get $wait))
      (i64.store offset=32 (local.get $sub) (i64.const 1))
      (if (call $poll_oneoff (local.get $sub) (i32.add (local.get $sub) (i32.const 48))
                             (i32.const 1) (i32.add (local.get $sub) (i32.const 96)))
        (then unreachable))
      (br $again)))

  (func $pollable_block (param $h i32)
    (local $slot i32)
    (local.set $slot (call $slot (local.get $h) (i32.const 3)))
    (if (i32.load8_u offset=1 (local.get $slot))
      (then (call $sleep_until (i64.load offset=8 (local.get $slot))))))

  (func (export "wasi:io/poll#[resource-drop]pollable") (param $h i32)
    (call $drop_handle (local.get $h) (i32.const 3)))
  (func (export "wasi:io/poll#[method]pollable.ready") (param $h i32) (result i32)
    (call $pollable_ready (local.get $h)))
  (func (export "wasi:io/poll#[method]pollable.block") (param $h i32)
    (call $pollable_block (local.get $h)))

  ;; poll(list<borrow<pollable>>) -> list<u32>: indices of the ready ones,
  ;; sleeping until the earliest deadline when none is ready.
  (func (export "wasi:io/poll#poll") (param $ptr i32) (param $len i32) (param $ret i32)
    (local $i i32) (local $ready i32) (local $out i32) (local $earliest i64) (local $slot i32)
    (if (i32.eqz (local.get $len)) (then unreachable))
    (block $some_ready
      (loop $again
        (local.set $ready (i32.const 0))
        (local.set $earliest (i64.const -1))
        (local.set $i (i32.const 0))
        (block $counted
          (loop $each
            (br_if $counted (i32.ge_u (local.get $i) (local.get $len)))
            (local.set $slot (call $slot (i32.load (i32.add (local.get $ptr) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 3)))
            (if (call $pollable_ready (i32.load (i32.add (local.get $ptr) (i32.shl (local.get $i) (i32.const 2)))))
              (then (local.set $ready (i32.add (local.get $ready) (i32.const 1))))
              (else
                (if (i64.lt_u (i64.load offset=8 (local.get $slot)) (local.get $earliest))
                  (then (local.set $earliest (i64.load offset=8 (local.get $slot)))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $each)))
        (br_if $some_ready (local.get $ready))
        (call $sleep_until (local.get $earliest))
        (br $again)))
    (local.set $out (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.shl (local.get $ready) (i32.const 2))))
    (i32.store (local.get $ret) (local.get $out))
    (i32.store offset=4 (local.get $ret) (local.get $ready))
    (local.set $i (i32.const 0))
    (block $written
      (loop $each
        (br_if $written (i32.ge_u (local.get $i) (local.get $len)))
        (if (call $pollable_ready (i32.load (i32.add (local.get $ptr) (i32.shl (local.get $i) (i32.const 2)))))
          (then
            (if (local.get $ready)
              (then
                (i32.store (local.get $out) (local.get $i))
                (local.set $out (i32.add (local.get $out) (i32.const 4)))
                (local.set $ready (i32.sub (local.get $ready) (i32.const 1)))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $each))))

  ;; ------------------------------------------------------ wasi:io/streams
  (func (export "wasi:io/streams#[resource-drop]input-stream") (param $h i32)
    (call $drop_handle (local.get $h) (i32.const 1)))
  (func (export "wasi:io/streams#[resource-drop]output-stream") (param $h i32)
    (call $drop_handle (local.get $h) (i32.const 2)))

  ;; read(len) -> result<list<u8>, stream-error>. Preview1 reads block, so
  ;; `read` and `blocking-read` are the same; zero bytes for a non-zero
  ;; request means end of stream (`closed`).
  (func $stream_read (param $h i32) (param $len i64) (param $ret i32)
    (local $slot i32) (local $buf i32) (local $size i32) (local $iov i32) (local $errno i32) (local $got i32)
    (local.set $slot (call $slot (local.get $h) (i32.const 1)))
    (local.set $size (select (i32.const 0x10000) (i32.wrap_i64 (local.get $len))
                             (i64.gt_u (local.get $len) (i64.const 0x10000))))
    (local.set $buf (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $size)))
    (local.set $iov (call $scratch))
    (i32.store (local.get $iov) (local.get $buf))
    (i32.store offset=4 (local.get $iov) (local.get $size))
    (if (i32.load8_u offset=1 (local.get $slot))
      (then
        (local.set $errno (call $fd_pread (i32.load offset=4 (local.get $slot)) (local.get $iov) (i32.const 1)
                                          (i64.load offset=8 (local.get $slot)) (i32.add (local.get $iov) (i32.const 8)))))
      (else
        (local.set $errno (call $fd_read (i32.load offset=4 (local.get $slot)) (local.get $iov) (i32.const 1)
                                         (i32.add (local.get $iov) (i32.const 8))))))
    (if (local.get $errno)
      (then (call $stream_fail (local.get $ret) (i32.const 4) (local.get $errno)) (return)))
    (local.set $got (i32.load offset=8 (local.get $iov)))
    (if (i32.and (i32.eqz (local.get $got)) (i32.ne (local.get $size) (i32.const 0)))
      (then (call $stream_closed (local.get $ret) (i32.const 4)) (return)))
    (i64.store offset=8 (local.get $slot)
      (i64.add (i64.load offset=8 (local.get $slot)) (i64.extend_i32_u (local.get $got))))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret) (local.get $buf))
    (i32.store offset=8 (local.get $ret) (local.get $got)))

  (func (export "wasi:io/streams#[method]input-stream.read") (param $h i32) (param $len i64) (param $ret i32)
    (call $stream_read (local.get $h) (local.get $len) (local.get $ret)))
  (func (export "wasi:io/streams#[method]input-stream.blocking-read") (param $h i32) (param $len i64) (param $ret i32)
    (call $stream_read (local.get $h) (local.get $len) (local.get $ret)))
  (func (export "wasi:io/streams#[method]input-stream.subscribe") (param $h i32) (result i32)
    (drop (call $slot (local.get $h) (i32.const 1)))
    (call $new_pollable (i32.const 0) (i64.const 0)))

  ;; skip(len) -> result<u64, stream-error>: read up to 64 KiB into a
  ;; temporary buffer and drop it.
  (func $stream_skip (param $h i32) (param $len i64) (param $ret i32)
    (local $slot i32) (local $buf i32) (local $size i32) (local $iov i32) (local $errno i32) (local $got i32)
    (local.set $slot (call $slot (local.get $h) (i32.const 1)))
    (local.set $size (select (i32.const 0x10000) (i32.wrap_i64 (local.get $len))
                             (i64.gt_u (local.get $len) (i64.const 0x10000))))
    (local.set $buf (call $temp_buffer (local.get $size)))
    (local.set $iov (call $scratch))
    (i32.store (local.get $iov) (local.get $buf))
    (i32.store offset=4 (local.get $iov) (local.get $size))
    (if (i32.load8_u offset=1 (local.get $slot))
      (then
        (local.set $errno (call $fd_pread (i32.load offset=4 (local.get $slot)) (local.get $iov) (i32.const 1)
                                          (i64.load offset=8 (local.get $slot)) (i32.add (local.get $iov) (i32.const 8)))))
      (else
        (local.set $errno (call $fd_read (i32.load offset=4 (local.get $slot)) (local.get $iov) (i32.const 1)
                                         (i32.add (local.get $iov) (i32.const 8))))))
    (if (local.get $errno)
      (then (call $stream_fail (local.get $ret) (i32.const 8) (local.get $errno)) (return)))
    (local.set $got (i32.load offset=8 (local.get $iov)))
    (if (i32.and (i32.eqz (local.get $got)) (i32.ne (local.get $size) (i32.const 0)))
      (then (call $stream_closed (local.get $ret) (i32.const 8)) (return)))
    (i64.store offset=8 (local.get $slot)
      (i64.add (i64.load offset=8 (local.get $slot)) (i64.extend_i32_u (local.get $got))))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i64.store offset=8 (local.get $ret) (i64.extend_i32_u (local.get $got))))

  (func (export "wasi:io/streams#[method]input-stream.skip") (param $h i32) (param $len i64) (param $ret i32)
    (call $stream_skip (local.get $h) (local.get $len) (local.get $ret)))
  (func (export "wasi:io/streams#[method]input-stream.blocking-skip") (param $h i32) (param $len i64) (param $ret i32)
    (call $stream_skip (local.get $h) (local.get $len) (local.get $ret)))

  ;; Write all of [ptr, ptr+len) to the stream; returns a preview1 errno.
  (func $write_all (param $slot i32) (param $ptr i32) (param $len i32) (result i32)
    (local $iov i32) (local $errno i32) (local $fd i32) (local $mode i32) (local $done i32)
    (local.set $iov (call $scratch))
    (local.set $fd (i32.load offset=4 (local.get $slot)))
    (local.set $mode (i32.load8_u offset=1 (local.get $slot)))
    (if (i32.eq (local.get $mode) (i32.const 2))
      (then
        (local.set $errno (call $fd_seek (local.get $fd) (i64.const 0) (i32.const 2) (i32.add (local.get $iov) (i32.const 16))))
        (if (local.get $errno) (then (return (local.get $errno))))))
    (block $finished
      (loop $more
        (br_if $finished (i32.ge_u (local.get $done) (local.get $len)))
        (i32.store (local.get $iov) (i32.add (local.get $ptr) (local.get $done)))
        (i32.store offset=4 (local.get $iov) (i32.sub (local.get $len) (local.get $done)))
        (if (i32.eq (local.get $mode) (i32.const 1))
          (then
            (local.set $errno (call $fd_pwrite (local.get $fd) (local.get $iov) (i32.const 1)
                                               (i64.load offset=8 (local.get $slot)) (i32.add (local.get $iov) (i32.const 8)))))
          (else
            (local.set $errno (call $fd_write (local.get $fd) (local.get $iov) (i32.const 1)
                                              (i32.add (local.get $iov) (i32.const 8))))))
        (if (local.get $errno) (then (return (local.get $errno))))
        (local.set $done (i32.add (local.get $done) (i32.load offset=8 (local.get $iov))))
        (i64.store offset=8 (local.get $slot)
          (i64.add (i64.load offset=8 (local.get $slot)) (i64.extend_i32_u (i32.load offset=8 (local.get $iov)))))
        (br $more)))
    (i32.const 0))

  (func $stream_write (param $h i32) (param $ptr i32) (param $len i32) (param $ret i32)
    (local $errno i32)
    (local.set $errno (call $write_all (call $slot (local.get $h) (i32.const 2)) (local.get $ptr) (local.get $len)))
    (if (local.get $errno)
      (then (call $stream_fail (local.get $ret) (i32.const 4) (local.get $errno)))
      (else (i32.store8 (local.get $ret) (i32.const 0)))))

  (func (export "wasi:io/streams#[method]output-stream.check-write") (param $h i32) (param $ret i32)
    (drop (call $slot (local.get $h) (i32.const 2)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i64.store offset=8 (local.get $ret) (i64.const 65536)))
  (func (export "wasi:io/streams#[method]output-stream.write") (param $h i32) (param $ptr i32) (param $len i32) (param $ret i32)
    (call $stream_write (local.get $h) (local.get $ptr) (local.get $len) (local.get $ret)))
  (func (export "wasi:io/streams#[method]output-stream.blocking-write-and-flush") (param $h i32) (param $ptr i32) (param $len i32) (param $ret i32)
    (call $stream_write (local.get $h) (local.get $ptr) (local.get $len) (local.get $ret)))
  ;; Preview1 writes are not buffered by the shim: flushing has nothing to do.
  (func (export "wasi:io/streams#[method]output-stream.flush") (param $h i32) (param $ret i32)
    (drop (call $slot (local.get $h) (i32.const 2)))
    (i32.store8 (local.get $ret) (i32.const 0)))
  (func (export "wasi:io/streams#[method]output-stream.blocking-flush") (param $h i32) (param $ret i32)
    (drop (call $slot (local.get $h) (i32.const 2)))
    (i32.store8 (local.get $ret) (i32.const 0)))
  (func (export "wasi:io/streams#[method]output-stream.subscribe") (param $h i32) (result i32)
    (drop (call $slot (local.get $h) (i32.const 2)))
    (call $new_pollable (i32.const 0) (i64.const 0)))

  ;; write-zeroes(len) -> result<_, stream-error>, in chunks of at most 64 KiB.
  (func $stream_write_zeroes (param $h i32) (param $len i64) (param $ret i32)
    (local $slot i32) (local $buf i32) (local $chunk i32) (local $errno i32)
    (local.set $slot (call $slot (local.get $h) (i32.const 2)))
    (local.set $buf (call $temp_buffer (i32.const 0x10000)))
    (memory.fill (local.get $buf) (i32.const 0) (i32.const 0x10000))
    (block $done
      (loop $more
        (br_if $done (i64.eqz (local.get $len)))
        (local.set $chunk (select (i32.const 0x10000) (i32.wrap_i64 (local.get $len))
                                  (i64.gt_u (local.get $len) (i64.const 0x10000))))
        (local.set $errno (call $write_all (local.get $slot) (local.get $buf) (local.get $chunk)))
        (if (local.get $errno)
          (then (call $stream_fail (local.get $ret) (i32.const 4) (local.get $errno)) (return)))
        (local.set $len (i64.sub (local.get $len) (i64.extend_i32_u (local.get $chunk))))
        (br $more)))
    (i32.store8 (local.get $ret) (i32.const 0)))

  (func (export "wasi:io/streams#[method]output-stream.write-zeroes") (param $h i32) (param $len i64) (param $ret i32)
    (call $stream_write_zeroes (local.get $h) (local.get $len) (local.get $ret)))
  (func (export "wasi:io/streams#[method]output-stream.blocking-write-zeroes-and-flush") (param $h i32) (param $len i64) (param $ret i32)
    (call $stream_write_zeroes (local.get $h) (local.get $len) (local.get $ret)))

  ;; splice(src, len) -> result<u64, stream-error>: one read of up to
  ;; min(len, 64 KiB) bytes from `src`, all of them written to this stream.
  (func $stream_splice (param $h i32) (param $src i32) (param $len i64) (param $ret i32)
    (local $out i32) (local $in i32) (local $buf i32) (local $size i32) (local $iov i32) (local $errno i32) (local $got i32)
    (local.set $out (call $slot (local.get $h) (i32.const 2)))
    (local.set $in (call $slot (local.get $src) (i32.const 1)))
    (local.set $size (select (i32.const 0x10000) (i32.wrap_i64 (local.get $len))
                             (i64.gt_u (local.get $len) (i64.const 0x10000))))
    (local.set $buf (call $temp_buffer (local.get $size)))
    (local.set $iov (call $scratch))
    (i32.store (local.get $iov) (local.get $buf))
    (i32.store offset=4 (local.get $iov) (local.get $size))
    (if (i32.load8_u offset=1 (local.get $in))
      (then
        (local.set $errno (call $fd_pread (i32.load offset=4 (local.get $in)) (local.get $iov) (i32.const 1)
                                          (i64.load offset=8 (local.get $in)) (i32.add (local.get $iov) (i32.const 8)))))
      (else
        (local.set $errno (call $fd_read (i32.load offset=4 (local.get $in)) (local.get $iov) (i32.const 1)
                                         (i32.add (local.get $iov) (i32.const 8))))))
    (if (local.get $errno)
      (then (call $stream_fail (local.get $ret) (i32.const 8) (local.get $errno)) (return)))
    (local.set $got (i32.load offset=8 (local.get $iov)))
    (if (i32.and (i32.eqz (local.get $got)) (i32.ne (local.get $size) (i32.const 0)))
      (then (call $stream_closed (local.get $ret) (i32.const 8)) (return)))
    (i64.store offset=8 (local.get $in)
      (i64.add (i64.load offset=8 (local.get $in)) (i64.extend_i32_u (local.get $got))))
    (local.set $errno (call $write_all (local.get $out) (local.get $buf) (local.get $got)))
    (if (local.get $errno)
      (then (call $stream_fail (local.get $ret) (i32.const 8) (local.get $errno)) (return)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i64.store offset=8 (local.get $ret) (i64.extend_i32_u (local.get $got))))

  (func (export "wasi:io/streams#[method]output-stream.splice") (param $h i32) (param $src i32) (param $len i64) (param $ret i32)
    (call $stream_splice (local.get $h) (local.get $src) (local.get $len) (local.get $ret)))
  (func (export "wasi:io/streams#[method]output-stream.blocking-splice") (param $h i32) (param $src i32) (param $len i64) (param $ret i32)
    (call $stream_splice (local.get $h) (local.get $src) (local.get $len) (local.get $ret)))

  ;; ------------------------------------------------------ wasi:clocks/*
  (func (export "wasi:clocks/monotonic-clock#now") (result i64)
    (call $monotonic_now))
  (func (export "wasi:clocks/monotonic-clock#resolution") (result i64)
    (if (call $clock_res_get (i32.const 1) (call $scratch)) (then unreachable))
    (i64.load (call $scratch)))
  (func (export "wasi:clocks/monotonic-clock#subscribe-instant") (param $when i64) (result i32)
    (call $new_pollable (i32.const 1) (local.get $when)))
  (func (export "wasi:clocks/monotonic-clock#subscribe-duration") (param $duration i64) (result i32)
    (call $new_pollable (i32.const 1) (i64.add (call $monotonic_now) (local.get $duration))))

  (func (export "wasi:clocks/wall-clock#now") (param $ret i32)
    (if (call $clock_time_get (i32.const 0) (i64.const 1) (call $scratch)) (then unreachable))
    (call $store_datetime (local.get $ret) (i64.load (call $scratch))))
  (func (export "wasi:clocks/wall-clock#resolution") (param $ret i32)
    (if (call $clock_res_get (i32.const 0) (call $scratch)) (then unreachable))
    (call $store_datetime (local.get $ret) (i64.load (call $scratch))))

  ;; ------------------------------------------------------ wasi:random/*
  (func $random_list (param $len i64) (param $ret i32)
    (local $buf i32) (local $size i32)
    (if (i64.gt_u (local.get $len) (i64.const 0x7fffffff)) (then unreachable))
    (local.set $size (i32.wrap_i64 (local.get $len)))
    (local.set $buf (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $size)))
    (if (call $random_get (local.get $buf) (local.get $size)) (then unreachable))
    (i32.store (local.get $ret) (local.get $buf))
    (i32.store offset=4 (local.get $ret) (local.get $size)))
  (func $random_u64 (result i64)
    (if (call $random_get (call $scratch) (i32.const 8)) (then unreachable))
    (i64.load (call $scratch)))

  (func (export "wasi:random/random#get-random-bytes") (param $len i64) (param $ret i32)
    (call $random_list (local.get $len) (local.get $ret)))
  (func (export "wasi:random/random#get-random-u64") (result i64)
    (call $random_u64))
  (func (export "wasi:random/insecure#get-insecure-random-bytes") (param $len i64) (param $ret i32)
    (call $random_list (local.get $len) (local.get $ret)))
  (func (export "wasi:random/insecure#get-insecure-random-u64") (result i64)
    (call $random_u64))
  (func (export "wasi:random/insecure-seed#insecure-seed") (param $ret i32)
    (i64.store (local.get $ret) (call $random_u64))
    (i64.store offset=8 (local.get $ret) (call $random_u64)))

  ;; ------------------------------------------------------ wasi:filesystem/preopens
  (func (export "wasi:filesystem/preopens#get-directories") (param $ret i32)
    (local $fd i32) (local $count i32) (local $list i32) (local $elem i32) (local $len i32) (local $name i32)
    ;; count the directory preopens: fds 3, 4, ... until the first that is not one
    (local.set $fd (i32.const 3))
    (block $end
      (loop $each
        (br_if $end (call $fd_prestat_get (local.get $fd) (call $scratch)))
        (br_if $end (i32.load8_u (call $scratch)))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $each)))
    (local.set $count (i32.sub (local.get $fd) (i32.const 3)))
    (local.set $list (call $realloc (i32.const 0) (i32.const 0) (i32.const 4) (i32.mul (local.get $count) (i32.const 12))))
    (local.set $fd (i32.const 3))
    (local.set $elem (local.get $list))
    (block $end
      (loop $each
        (br_if $end (i32.ge_u (local.get $fd) (i32.add (local.get $count) (i32.const 3))))
        (if (call $fd_prestat_get (local.get $fd) (call $scratch)) (then unreachable))
        (local.set $len (i32.load offset=4 (call $scratch)))
        (local.set $name (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $len)))
        (if (call $fd_prestat_dir_name (local.get $fd) (local.get $name) (local.get $len)) (then unreachable))
        ;; some hosts count a trailing NUL in the length
        (if (local.get $len)
          (then
            (if (i32.eqz (i32.load8_u (i32.add (local.get $name) (i32.sub (local.get $len) (i32.const 1)))))
              (then (local.set $len (i32.sub (local.get $len) (i32.const 1)))))))
        (i32.store (local.get $elem)
          (call $new_handle (i32.const 4) (i32.const 0) (i32.const 1) (local.get $fd) (i64.const 0)))
        (i32.store offset=4 (local.get $elem) (local.get $name))
        (i32.store offset=8 (local.get $elem) (local.get $len))
        (local.set $elem (i32.add (local.get $elem) (i32.const 12)))
        (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
        (br $each)))
    (i32.store (local.get $ret) (local.get $list))
    (i32.store offset=4 (local.get $ret) (local.get $count)))

  ;; ------------------------------------------------------ wasi:filesystem/types
  (func (export "wasi:filesystem/types#[resource-drop]descriptor") (param $h i32)
    (local $slot i32)
    (local.set $slot (call $slot (local.get $h) (i32.const 4)))
    (if (i32.eqz (i32.and (i32.load8_u offset=2 (local.get $slot)) (i32.const 1)))
      (then (drop (call $fd_close (i32.load offset=4 (local.get $slot))))))
    (call $drop_handle (local.get $h) (i32.const 4)))
  (func (export "wasi:filesystem/types#[resource-drop]directory-entry-stream") (param $h i32)
    (call $drop_handle (local.get $h) (i32.const 6)))

  ;; result<own<stream>, error-code> for a stream over a descriptor.
  (func $descriptor_stream (param $h i32) (param $kind i32) (param $mode i32) (param $offset i64) (param $ret i32)
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret)
      (call $new_handle (local.get $kind) (local.get $mode) (i32.const 0)
                        (call $fd_of (local.get $h) (i32.const 4)) (local.get $offset))))
  (func (export "wasi:filesystem/types#[method]descriptor.read-via-stream") (param $h i32) (param $offset i64) (param $ret i32)
    (call $descriptor_stream (local.get $h) (i32.const 1) (i32.const 1) (local.get $offset) (local.get $ret)))
  (func (export "wasi:filesystem/types#[method]descriptor.write-via-stream") (param $h i32) (param $offset i64) (param $ret i32)
    (call $descriptor_stream (local.get $h) (i32.const 2) (i32.const 1) (local.get $offset) (local.get $ret)))
  (func (export "wasi:filesystem/types#[method]descriptor.append-via-stream") (param $h i32) (param $ret i32)
    (call $descriptor_stream (local.get $h) (i32.const 2) (i32.const 2) (i64.const 0) (local.get $ret)))

  (func (export "wasi:filesystem/types#[method]descriptor.advise")
    (param $h i32) (param $offset i64) (param $len i64) (param $advice i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $fd_advise (call $fd_of (local.get $h) (i32.const 4)) (local.get $offset) (local.get $len) (local.get $advice))))
  (func (export "wasi:filesystem/types#[method]descriptor.sync-data") (param $h i32) (param $ret i32)
    (call $unit_result (local.get $ret) (call $fd_datasync (call $fd_of (local.get $h) (i32.const 4)))))
  (func (export "wasi:filesystem/types#[method]descriptor.sync") (param $h i32) (param $ret i32)
    (call $unit_result (local.get $ret) (call $fd_sync (call $fd_of (local.get $h) (i32.const 4)))))
  (func (export "wasi:filesystem/types#[method]descriptor.set-size") (param $h i32) (param $size i64) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $fd_filestat_set_size (call $fd_of (local.get $h) (i32.const 4)) (local.get $size))))

  ;; preview1 filetype -> descriptor-type
  (func $descriptor_type (param $filetype i32) (result i32)
    (if (i32.eq (local.get $filetype) (i32.const 4)) (then (return (i32.const 6))))  ;; regular-file
    (if (i32.eq (local.get $filetype) (i32.const 7)) (then (return (i32.const 5))))  ;; symbolic-link
    (if (i32.eq (local.get $filetype) (i32.const 5)) (then (return (i32.const 7))))  ;; socket
    (if (i32.eq (local.get $filetype) (i32.const 6)) (then (return (i32.const 7))))  ;; socket
    (if (i32.gt_u (local.get $filetype) (i32.const 7)) (then (return (i32.const 0))))
    (local.get $filetype))                                                         ;; 0-3 coincide

  (func (export "wasi:filesystem/types#[method]descriptor.get-type") (param $h i32) (param $ret i32)
    (local $errno i32)
    (local.set $errno (call $fd_fdstat_get (call $fd_of (local.get $h) (i32.const 4)) (call $scratch)))
    (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 1) (local.get $errno)) (return)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store8 offset=1 (local.get $ret) (call $descriptor_type (i32.load8_u (call $scratch)))))

  (func (export "wasi:filesystem/types#[method]descriptor.get-flags") (param $h i32) (param $ret i32)
    (local $errno i32) (local $rights i64) (local $fdflags i32) (local $flags i32)
    (local.set $errno (call $fd_fdstat_get (call $fd_of (local.get $h) (i32.const 4)) (call $scratch)))
    (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 1) (local.get $errno)) (return)))
    (local.set $fdflags (i32.load16_u offset=2 (call $scratch)))
    (local.set $rights (i64.load offset=8 (call $scratch)))
    (if (i64.ne (i64.and (local.get $rights) (i64.const 0x4002)) (i64.const 0))      ;; fd_read | fd_readdir
      (then (local.set $flags (i32.or (local.get $flags) (i32.const 1)))))
    (if (i64.ne (i64.and (local.get $rights) (i64.const 0x40)) (i64.const 0))        ;; fd_write
      (then (local.set $flags (i32.or (local.get $flags) (i32.const 2)))))
    (if (i32.and (local.get $fdflags) (i32.const 16)) (then (local.set $flags (i32.or (local.get $flags) (i32.const 4)))))
    (if (i32.and (local.get $fdflags) (i32.const 2)) (then (local.set $flags (i32.or (local.get $flags) (i32.const 8)))))
    (if (i32.and (local.get $fdflags) (i32.const 8)) (then (local.set $flags (i32.or (local.get $flags) (i32.const 16)))))
    (if (i32.eq (call $descriptor_type (i32.load8_u (call $scratch))) (i32.const 3))
      (then (local.set $flags (i32.or (local.get $flags) (i32.const 32)))))          ;; mutate-directory
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store8 offset=1 (local.get $ret) (local.get $flags)))

  ;; new-timestamp (flattened: discriminant, seconds, nanoseconds) -> preview1
  ;; (timestamp, fst_flags bits); $now_bit / $set_bit are ATIM(_NOW) or MTIM(_NOW).
  (func $timestamp_flags (param $tag i32) (param $set_bit i32) (param $now_bit i32) (result i32)
    (if (i32.eq (local.get $tag) (i32.const 1)) (then (return (local.get $now_bit))))
    (if (i32.eq (local.get $tag) (i32.const 2)) (then (return (local.get $set_bit))))
    (i32.const 0))
  (func $timestamp_nanos (param $seconds i64) (param $nanos i32) (result i64)
    (i64.add (i64.mul (local.get $seconds) (i64.const 1000000000)) (i64.extend_i32_u (local.get $nanos))))

  (func (export "wasi:filesystem/types#[method]descriptor.set-times")
    (param $h i32) (param $atag i32) (param $asec i64) (param $ansec i32)
    (param $mtag i32) (param $msec i64) (param $mnsec i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $fd_filestat_set_times (call $fd_of (local.get $h) (i32.const 4))
        (call $timestamp_nanos (local.get $asec) (local.get $ansec))
        (call $timestamp_nanos (local.get $msec) (local.get $mnsec))
        (i32.or (call $timestamp_flags (local.get $atag) (i32.const 1) (i32.const 2))
                (call $timestamp_flags (local.get $mtag) (i32.const 4) (i32.const 8))))))

  ;; read(len, offset) -> result<tuple<list<u8>, bool>, error-code>
  (func (export "wasi:filesystem/types#[method]descriptor.read")
    (param $h i32) (param $len i64) (param $offset i64) (param $ret i32)
    (local $buf i32) (local $size i32) (local $iov i32) (local $errno i32) (local $got i32)
    (local.set $size (select (i32.const 0x10000) (i32.wrap_i64 (local.get $len))
                             (i64.gt_u (local.get $len) (i64.const 0x10000))))
    (local.set $buf (call $realloc (i32.const 0) (i32.const 0) (i32.const 1) (local.get $size)))
    (local.set $iov (call $scratch))
    (i32.store (local.get $iov) (local.get $buf))
    (i32.store offset=4 (local.get $iov) (local.get $size))
    (local.set $errno (call $fd_pread (call $fd_of (local.get $h) (i32.const 4)) (local.get $iov) (i32.const 1)
                                      (local.get $offset) (i32.add (local.get $iov) (i32.const 8))))
    (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 4) (local.get $errno)) (return)))
    (local.set $got (i32.load offset=8 (local.get $iov)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret) (local.get $buf))
    (i32.store offset=8 (local.get $ret) (local.get $got))
    (i32.store8 offset=12 (local.get $ret)
      (i32.and (i32.eqz (local.get $got)) (i32.ne (local.get $size) (i32.const 0)))))

  ;; write(buffer, offset) -> result<filesize, error-code>
  (func (export "wasi:filesystem/types#[method]descriptor.write")
    (param $h i32) (param $ptr i32) (param $len i32) (param $offset i64) (param $ret i32)
    (local $iov i32) (local $errno i32)
    (local.set $iov (call $scratch))
    (i32.store (local.get $iov) (local.get $ptr))
    (i32.store offset=4 (local.get $iov) (local.get $len))
    (local.set $errno (call $fd_pwrite (call $fd_of (local.get $h) (i32.const 4)) (local.get $iov) (i32.const 1)
                                       (local.get $offset) (i32.add (local.get $iov) (i32.const 8))))
    (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 8) (local.get $errno)) (return)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i64.store offset=8 (local.get $ret) (i64.extend_i32_u (i32.load offset=8 (local.get $iov)))))

  (func (export "wasi:filesystem/types#[method]descriptor.read-directory") (param $h i32) (param $ret i32)
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret)
      (call $new_handle (i32.const 6) (i32.const 0) (i32.const 0)
                        (call $fd_of (local.get $h) (i32.const 4)) (i64.const 0))))

  ;; descriptor-stat at $dst from a preview1 filestat at $src.
  (func $store_stat (param $dst i32) (param $src i32)
    (i32.store8 (local.get $dst) (call $descriptor_type (i32.load8_u offset=16 (local.get $src))))
    (i64.store offset=8 (local.get $dst) (i64.load offset=24 (local.get $src)))
    (i64.store offset=16 (local.get $dst) (i64.load offset=32 (local.get $src)))
    (i32.store8 offset=24 (local.get $dst) (i32.const 1))
    (call $store_datetime (i32.add (local.get $dst) (i32.const 32)) (i64.load offset=40 (local.get $src)))
    (i32.store8 offset=48 (local.get $dst) (i32.const 1))
    (call $store_datetime (i32.add (local.get $dst) (i32.const 56)) (i64.load offset=48 (local.get $src)))
    (i32.store8 offset=72 (local.get $dst) (i32.const 1))
    (call $store_datetime (i32.add (local.get $dst) (i32.const 80)) (i64.load offset=56 (local.get $src))))

  (func $stat_result (param $ret i32) (param $errno i32)
    (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 8) (local.get $errno)) (return)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (call $store_stat (i32.add (local.get $ret) (i32.const 8)) (call $scratch)))

  (func (export "wasi:filesystem/types#[method]descriptor.stat") (param $h i32) (param $ret i32)
    (call $stat_result (local.get $ret)
      (call $fd_filestat_get (call $fd_of (local.get $h) (i32.const 4)) (call $scratch))))
  (func (export "wasi:filesystem/types#[method]descriptor.stat-at")
    (param $h i32) (param $path_flags i32) (param $path i32) (param $path_len i32) (param $ret i32)
    (call $stat_result (local.get $ret)
      (call $path_filestat_get (call $fd_of (local.get $h) (i32.const 4)) (i32.and (local.get $path_flags) (i32.const 1))
                               (local.get $path) (local.get $path_len) (call $scratch))))

  (func (export "wasi:filesystem/types#[method]descriptor.set-times-at")
    (param $h i32) (param $path_flags i32) (param $path i32) (param $path_len i32)
    (param $atag i32) (param $asec i64) (param $ansec i32)
    (param $mtag i32) (param $msec i64) (param $mnsec i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $path_filestat_set_times (call $fd_of (local.get $h) (i32.const 4))
        (i32.and (local.get $path_flags) (i32.const 1)) (local.get $path) (local.get $path_len)
        (call $timestamp_nanos (local.get $asec) (local.get $ansec))
        (call $timestamp_nanos (local.get $msec) (local.get $mnsec))
        (i32.or (call $timestamp_flags (local.get $atag) (i32.const 1) (i32.const 2))
                (call $timestamp_flags (local.get $mtag) (i32.const 4) (i32.const 8))))))


  (func (export "wasi:filesystem/types#[method]descriptor.link-at")
    (param $h i32) (param $old_flags i32) (param $old i32) (param $old_len i32)
    (param $new_h i32) (param $new i32) (param $new_len i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $path_link (call $fd_of (local.get $h) (i32.const 4)) (i32.and (local.get $old_flags) (i32.const 1))
                       (local.get $old) (local.get $old_len)
                       (call $fd_of (local.get $new_h) (i32.const 4)) (local.get $new) (local.get $new_len))))

  ;; open-at(path-flags, path, open-flags, descriptor-flags) -> result<own<descriptor>, error-code>
  (func (export "wasi:filesystem/types#[method]descriptor.open-at")
    (param $h i32) (param $path_flags i32) (param $path i32) (param $path_len i32)
    (param $open_flags i32) (param $flags i32) (param $ret i32)
    (local $rights i64) (local $fdflags i32) (local $errno i32)
    ;; Rights every descriptor gets (seek, tell, advise, path_*, filestat, readdir, poll);
    ;; fd_read only with `read`, fd_write / sync / allocate / set_size only with `write`.
    (local.set $rights (i64.const 0x0fbffeac))
    (if (i32.and (local.get $flags) (i32.const 1))
      (then (local.set $rights (i64.or (local.get $rights) (i64.const 0x2)))))
    (if (i32.and (local.get $flags) (i32.const 2))
      (then (local.set $rights (i64.or (local.get $rights) (i64.const 0x400151)))))
    (if (i32.and (local.get $flags) (i32.const 4)) (then (local.set $fdflags (i32.or (local.get $fdflags) (i32.const 16)))))
    (if (i32.and (local.get $flags) (i32.const 8)) (then (local.set $fdflags (i32.or (local.get $fdflags) (i32.const 2)))))
    (if (i32.and (local.get $flags) (i32.const 16)) (then (local.set $fdflags (i32.or (local.get $fdflags) (i32.const 8)))))
    ;; open-flags bits (create, directory, exclusive, truncate) equal preview1 oflags
    (local.set $errno
      (call $path_open (call $fd_of (local.get $h) (i32.const 4)) (i32.and (local.get $path_flags) (i32.const 1))
                       (local.get $path) (local.get $path_len) (i32.and (local.get $open_flags) (i32.const 15))
                       (local.get $rights) (i64.const 0x0fffffff) (local.get $fdflags) (call $scratch)))
    (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 4) (local.get $errno)) (return)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret)
      (call $new_handle (i32.const 4) (i32.const 0) (i32.const 0) (i32.load (call $scratch)) (i64.const 0))))

  ;; readlink-at(path) -> result<string, error-code>
  (func (export "wasi:filesystem/types#[method]descriptor.readlink-at")
    (param $h i32) (param $path i32) (param $path_len i32) (param $ret i32)
    (local $buf i32) (local $errno i32) (local $used i32)
    (local.set $buf (call $temp_buffer (i32.const 4096)))
    (local.set $errno (call $path_readlink (call $fd_of (local.get $h) (i32.const 4)) (local.get $path) (local.get $path_len)
                                           (local.get $buf) (i32.const 4096) (call $scratch)))
    (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 4) (local.get $errno)) (return)))
    (local.set $used (i32.load (call $scratch)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store offset=4 (local.get $ret) (call $copy_out (local.get $buf) (local.get $used)))
    (i32.store offset=8 (local.get $ret) (local.get $used)))

  (func (export "wasi:filesystem/types#[method]descriptor.create-directory-at")
    (param $h i32) (param $path i32) (param $path_len i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $path_create_directory (call $fd_of (local.get $h) (i32.const 4)) (local.get $path) (local.get $path_len))))
  (func (export "wasi:filesystem/types#[method]descriptor.remove-directory-at")
    (param $h i32) (param $path i32) (param $path_len i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $path_remove_directory (call $fd_of (local.get $h) (i32.const 4)) (local.get $path) (local.get $path_len))))
  (func (export "wasi:filesystem/types#[method]descriptor.unlink-file-at")
    (param $h i32) (param $path i32) (param $path_len i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $path_unlink_file (call $fd_of (local.get $h) (i32.const 4)) (local.get $path) (local.get $path_len))))
  (func (export "wasi:filesystem/types#[method]descriptor.rename-at")
    (param $h i32) (param $old i32) (param $old_len i32) (param $new_h i32) (param $new i32) (param $new_len i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $path_rename (call $fd_of (local.get $h) (i32.const 4)) (local.get $old) (local.get $old_len)
                         (call $fd_of (local.get $new_h) (i32.const 4)) (local.get $new) (local.get $new_len))))
  (func (export "wasi:filesystem/types#[method]descriptor.symlink-at")
    (param $h i32) (param $old i32) (param $old_len i32) (param $new i32) (param $new_len i32) (param $ret i32)
    (call $unit_result (local.get $ret)
      (call $path_symlink (local.get $old) (local.get $old_len)
                          (call $fd_of (local.get $h) (i32.const 4)) (local.get $new) (local.get $new_len))))

  (func (export "wasi:filesystem/types#[method]descriptor.is-same-object") (param $h i32) (param $other i32) (result i32)
    (local $dev i64) (local $ino i64)
    (if (call $fd_filestat_get (call $fd_of (local.get $h) (i32.const 4)) (call $scratch)) (then (return (i32.const 0))))
    (local.set $dev (i64.load (call $scratch)))
    (local.set $ino (i64.load offset=8 (call $scratch)))
    (if (call $fd_filestat_get (call $fd_of (local.get $other) (i32.const 4)) (call $scratch)) (then (return (i32.const 0))))
    (i32.and (i64.eq (local.get $dev) (i64.load (call $scratch)))
             (i64.eq (local.get $ino) (i64.load offset=8 (call $scratch)))))

  ;; metadata-hash-value { lower: dev, upper: ino } — stable for one object,
  ;; which is all the interface promises.
  (func $hash_result (param $ret i32) (param $errno i32)
    (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 8) (local.get $errno)) (return)))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i64.store offset=8 (local.get $ret) (i64.load (call $scratch)))
    (i64.store offset=16 (local.get $ret) (i64.load offset=8 (call $scratch))))
  (func (export "wasi:filesystem/types#[method]descriptor.metadata-hash") (param $h i32) (param $ret i32)
    (call $hash_result (local.get $ret)
      (call $fd_filestat_get (call $fd_of (local.get $h) (i32.const 4)) (call $scratch))))
  (func (export "wasi:filesystem/types#[method]descriptor.metadata-hash-at")
    (param $h i32) (param $path_flags i32) (param $path i32) (param $path_len i32) (param $ret i32)
    (call $hash_result (local.get $ret)
      (call $path_filestat_get (call $fd_of (local.get $h) (i32.const 4)) (i32.and (local.get $path_flags) (i32.const 1))
                               (local.get $path) (local.get $path_len) (call $scratch))))

  ;; read-directory-entry() -> result<option<directory-entry>, error-code>.
  ;; One fd_readdir call per entry from the stored cookie; `.` and `..` are
  ;; skipped because WASI 0.2 does not list them.
  (func (export "wasi:filesystem/types#[method]directory-entry-stream.read-directory-entry") (param $h i32) (param $ret i32)
    (local $slot i32) (local $buf i32) (local $errno i32) (local $used i32) (local $name_len i32) (local $name i32)
    (local.set $slot (call $slot (local.get $h) (i32.const 6)))
    (local.set $buf (call $dirbuf))
    (loop $next
      (local.set $errno (call $fd_readdir (i32.load offset=4 (local.get $slot)) (local.get $buf) (i32.const 4096)
                                          (i64.load offset=8 (local.get $slot)) (call $scratch)))
      (if (local.get $errno) (then (call $fail (local.get $ret) (i32.const 4) (local.get $errno)) (return)))
      (local.set $used (i32.load (call $scratch)))
      (if (i32.lt_u (local.get $used) (i32.const 24))
        (then
          (i32.store8 (local.get $ret) (i32.const 0))
          (i32.store8 offset=4 (local.get $ret) (i32.const 0))
          (return)))
      (local.set $name_len (i32.load offset=16 (local.get $buf)))
      (if (i32.gt_u (i32.add (local.get $name_len) (i32.const 24)) (local.get $used))
        (then (call $fail (local.get $ret) (i32.const 4) (i32.const 37)) (return)))  ;; name-too-long
      (i64.store offset=8 (local.get $slot) (i64.load (local.get $buf)))
      (local.set $name (i32.add (local.get $buf) (i32.const 24)))
      ;; "." or ".."
      (br_if $next (i32.and (i32.eq (local.get $name_len) (i32.const 1))
                            (i32.eq (i32.load8_u (local.get $name)) (i32.const 46))))
      (br_if $next (i32.and (i32.eq (local.get $name_len) (i32.const 2))
                            (i32.eq (i32.load16_u (local.get $name)) (i32.const 0x2e2e)))))
    (i32.store8 (local.get $ret) (i32.const 0))
    (i32.store8 offset=4 (local.get $ret) (i32.const 1))
    (i32.store8 offset=8 (local.get $ret) (call $descriptor_type (i32.load8_u offset=20 (local.get $buf))))
    (i32.store offset=12 (local.get $ret) (call $copy_out (local.get $name) (local.get $name_len)))
    (i32.store offset=16 (local.get $ret) (local.get $name_len)))

  ;; filesystem-error-code(borrow<error>) -> option<error-code>
  (func (export "wasi:filesystem/types#filesystem-error-code") (param $err i32) (param $ret i32)
    (i32.store8 (local.get $ret) (i32.const 1))
    (i32.store8 offset=1 (local.get $ret) (call $error_code (call $fd_of (local.get $err) (i32.const 5)))))
)
