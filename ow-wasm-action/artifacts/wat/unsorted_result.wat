;; An SDK-ABI module whose result's keys are in no sorted order, at every depth:
;; {"zeta":1,"alpha":[{"b":2,"a":1}],"mid":{"y":1,"x":2}}
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\22zeta\22:1,\22alpha\22:[{\22b\22:2,\22a\22:1}],\22mid\22:{\22y\22:1,\22x\22:2}}")
  (func (export "__ow_alloc") (param i32) (result i32) (i32.const 2048))
  (func (export "__ow_main") (param i32 i32) (result i64)
    ;; region (1024, 54) packed as ptr << 32 | len
    (i64.or (i64.shl (i64.const 1024) (i64.const 32)) (i64.const 54))))
