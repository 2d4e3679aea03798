// Drives ow-executor standalone with the real openwhisk npm client: create, invoke (blocking,
// result, non-blocking), read logs and the result, list, delete. Started by the Rust test
// ow-executor/tests/all/npm_client.rs with OW_APIHOST, OW_AUTH, ADD_ZIP and LOG_ZIP set.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import openwhisk from 'openwhisk';

const ow = openwhisk({ apihost: process.env.OW_APIHOST, api_key: process.env.OW_AUTH });
let passed = 0;

async function check(name, body) {
  await body();
  passed += 1;
  console.log(`ok - ${name}`);
}

async function activationOf(id) {
  for (let attempt = 0; attempt < 300; attempt += 1) {
    try {
      return await ow.activations.get({ name: id });
    } catch (error) {
      if (error.statusCode !== 404) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  throw new Error(`activation ${id} was never recorded`);
}

await check('create actions from zips', async () => {
  const add = await ow.actions.create({ name: 'add', action: readFileSync(process.env.ADD_ZIP), kind: 'wasm:0.1' });
  assert.equal(add.name, 'add');
  assert.equal(add.version, '0.0.1');
  const log = await ow.actions.create({ name: 'log', action: readFileSync(process.env.LOG_ZIP), kind: 'wasm:0.1' });
  assert.equal(log.exec.kind, 'wasm:0.1');
});

await check('a second create without overwrite is a conflict', async () => {
  await assert.rejects(
    ow.actions.create({ name: 'add', action: readFileSync(process.env.ADD_ZIP), kind: 'wasm:0.1' }),
    (error) => error.statusCode === 409 && /resource already exists/.test(error.message),
  );
});

await check('blocking invoke with result', async () => {
  const result = await ow.actions.invoke({ name: 'add', blocking: true, result: true, params: { param1: 2, param2: 2 } });
  assert.deepEqual(result, { result: 4 });
});

await check('blocking invoke answers the activation', async () => {
  const activation = await ow.actions.invoke({ name: 'add', blocking: true, params: { param1: 40, param2: 2 } });
  assert.equal(activation.response.status, 'success');
  assert.deepEqual(activation.response.result, { result: 42 });
  assert.match(activation.activationId, /^[0-9a-f]{32}$/);
});

await check('non-blocking invoke, then logs and result', async () => {
  const { activationId } = await ow.actions.invoke({ name: 'log', params: { lines: 2, message: 'from npm' } });
  assert.match(activationId, /^[0-9a-f]{32}$/);
  const activation = await activationOf(activationId);
  assert.deepEqual(activation.response.result, { lines: 2 });
  const { logs } = await ow.activations.logs({ name: activationId });
  assert.equal(logs.length, 4);
  assert.match(logs[0], /^\S{30} stdout: stdout 0: from npm$/);
  const result = await ow.activations.result({ name: activationId });
  assert.deepEqual(result.result, { lines: 2 });
});

await check('list actions and activations', async () => {
  const actions = await ow.actions.list();
  assert.deepEqual(actions.map((a) => a.name).sort(), ['add', 'log']);
  const activations = await ow.activations.list({ limit: 10 });
  assert.equal(activations.length, 3);
});

await check('delete, then the action is gone', async () => {
  await ow.actions.delete({ name: 'add' });
  await assert.rejects(ow.actions.get({ name: 'add' }), (error) => error.statusCode === 404);
});

console.log(`${passed} passed, 0 failed`);
