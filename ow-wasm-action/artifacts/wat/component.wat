;; The smallest WebAssembly component: engines here run core modules only.
(component)
