;; An SDK-ABI module that answers `{}` to the parameters `{}`; given anything else, it
;; recurses without end until the call stack is exhausted.
(module
  (memory (export "memory") 1)
  (func $recurse (param i64) (result i64)
    (i64.add (call $recurse (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "__ow_main") (param $ptr i32) (param $len i32) (result i64)
    (if (i32.le_u (local.get $len) (i32.const 2))
      (then
        (return (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
                        (i64.extend_i32_u (local.get $len))))))
    (call $recurse (i64.const 0))))
