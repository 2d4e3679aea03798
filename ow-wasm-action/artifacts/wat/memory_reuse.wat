;; An SDK-ABI module that checks its memory is the one it declares, then leaves it changed
;; for whoever runs next. Called with `{}` it traps unless memory is 1 page and every byte
;; from 4096 to the page's end is zero; then it fills those bytes, grows memory by 2 pages,
;; traps unless the grown pages are zero, fills them too and answers `{}`. Called with longer
;; parameters it loads from the first byte past its declared page instead, which traps in a
;; memory of 1 page: a load that succeeds answers `{}`.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{}")
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
  ;; Traps unless the bytes from $at up to $end (8-byte aligned) are zero.
  (func $expect_zero (param $at i32) (param $end i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        (if (i64.ne (i64.load (local.get $at)) (i64.const 0))
          (then unreachable))
        (local.set $at (i32.add (local.get $at) (i32.const 8)))
        (br $next))))
  (func (export "__ow_main") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.gt_u (local.get $len) (i32.const 2))
      (then
        (drop (i32.load (i32.const 65536)))
        (return (i64.const 2))))
    (if (i32.ne (memory.size) (i32.const 1))
      (then unreachable))
    (call $expect_zero (i32.const 4096) (i32.const 65536))
    (memory.fill (i32.const 4096) (i32.const 0xff) (i32.const 61440))
    (if (i32.ne (memory.grow (i32.const 2)) (i32.const 1))
      (then unreachable))
    (call $expect_zero (i32.const 65536) (i32.const 196608))
    (memory.fill (i32.const 65536) (i32.const 0xff) (i32.const 131072))
    ;; region (0, 2) packed as ptr << 32 | len
    (i64.const 2)))
