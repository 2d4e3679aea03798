;; An SDK-ABI module whose result is the JSON number 42, not a dictionary or array.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "42")
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 2048))
  (func (export "__ow_main") (param i32 i32) (result i64)
    ;; region (1024, 2) packed as ptr << 32 | len
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 2))))
