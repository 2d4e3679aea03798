;; An SDK-ABI module that answers `{}` to the parameters `{}`; given anything else, it grows its
;; memory 1 MiB at a time until growing fails, then traps, as a program does when its
;; allocator runs out.
(module
  (memory (export "memory") 1)
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "__ow_main") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.le_u (local.get $len) (i32.const 2))
      (then
        (return (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
                        (i64.extend_i32_u (local.get $len))))))
    (loop $again
      (br_if $again (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
