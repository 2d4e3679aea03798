// Drives ow-executor standalone with the real openwhisk npm client: create, invoke (blocking,
// result, non-blocking), read logs and the result, list, delete; packages and a binding, a
// sequence, a web action (over plain HTTP, no client library), a trigger fired through a
// rule. Started twice by the Rust test ow-executor/tests/all/npm_client.rs, with OW_APIHOST,
// OW_AUTH, ADD_ZIP, LOG_ZIP and ECHO_ZIP set: with OW_PHASE=before on a fresh server, then
// with OW_PHASE=after on a server restarted on the same data, which must still hold it all.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import openwhisk from 'openwhisk';

const apihost = process.env.OW_APIHOST;
const ow = openwhisk({ apihost, api_key: process.env.OW_AUTH });
const phase = process.env.OW_PHASE;
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

async function webGet(path) {
  // Plain HTTP, no credentials: what a browser or curl sends.
  const response = await fetch(`${apihost}/api/v1/web/guest/${path}`);
  return { status: response.status, type: response.headers.get('content-type'), text: await response.text() };
}

async function causedBy(triggerActivationId) {
  const trigger = await activationOf(triggerActivationId);
  return trigger.logs.map((line) => JSON.parse(line));
}

async function firedEcho(params) {
  const { activationId } = await ow.triggers.invoke({ name: 'ticks', params });
  const [caused] = await causedBy(activationId);
  assert.equal(caused.rule, 'guest/on-tick');
  assert.equal(caused.success, true);
  return (await activationOf(caused.activationId)).response.result;
}

async function before() {
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

  await check('a package binds parameters under its actions, a binding over the package', async () => {
    await ow.packages.create({ name: 'utils', package: { parameters: [{ key: 'greeting', value: 'hello' }] } });
    await ow.actions.create({ name: 'utils/echo', action: readFileSync(process.env.ECHO_ZIP), kind: 'wasm:0.1' });
    const result = await ow.actions.invoke({ name: 'utils/echo', blocking: true, result: true, params: { to: 'npm' } });
    assert.deepEqual(result, { greeting: 'hello', to: 'npm' });
    await ow.packages.create({
      name: 'mine',
      package: { binding: { namespace: '_', name: 'utils' }, parameters: [{ key: 'greeting', value: 'hi' }] },
    });
    const bound = await ow.actions.invoke({ name: 'mine/echo', blocking: true, result: true });
    assert.deepEqual(bound, { greeting: 'hi' });
    const pkg = await ow.packages.get({ name: 'utils' });
    assert.deepEqual(pkg.actions.map((a) => a.name), ['echo']);
  });

  await check('a sequence passes each result to the next component', async () => {
    await ow.actions.create({ name: 'sum', action: readFileSync(process.env.ADD_ZIP), kind: 'wasm:0.1' });
    await ow.actions.create({ name: 'sum-then-echo', sequence: ['/_/sum', '/_/utils/echo'] });
    const activation = await ow.actions.invoke({ name: 'sum-then-echo', blocking: true, params: { param1: 20, param2: 22 } });
    assert.deepEqual(activation.response.result, { result: 42, greeting: 'hello' });
    assert.equal(activation.logs.length, 2);
    const first = await activationOf(activation.logs[0]);
    assert.equal(first.name, 'sum');
    assert.equal(first.cause, activation.activationId);
  });

  await check('a web action answers plain HTTP', async () => {
    await ow.actions.create({
      name: 'page', action: readFileSync(process.env.ECHO_ZIP), kind: 'wasm:0.1', annotations: { 'web-export': true },
    });
    const page = await webGet('default/page.http?statusCode=201&body=hello%20web');
    assert.deepEqual(page, { status: 201, type: 'text/html; charset=UTF-8', text: 'hello web' });
    const json = await webGet('default/page.json?x=1');
    assert.equal(JSON.parse(json.text).__ow_method, 'get');
    const hidden = await webGet('default/sum.json');
    assert.equal(hidden.status, 404);
  });

  await check('a trigger fired through a rule invokes its action', async () => {
    await ow.triggers.create({ name: 'ticks', trigger: { parameters: [{ key: 'from', value: 'trigger' }] } });
    const rule = await ow.rules.create({ name: 'on-tick', trigger: 'ticks', action: 'echo-tick' }).catch((e) => e);
    assert.equal(rule.statusCode, 400, 'the action does not exist yet');
    await ow.actions.create({ name: 'echo-tick', action: readFileSync(process.env.ECHO_ZIP), kind: 'wasm:0.1' });
    const created = await ow.rules.create({ name: 'on-tick', trigger: 'ticks', action: 'echo-tick' });
    assert.equal(created.status, 'active');
    assert.deepEqual(await firedEcho({ n: 1 }), { from: 'trigger', n: 1 });
    await ow.rules.disable({ name: 'on-tick' });
    assert.equal((await ow.rules.get({ name: 'on-tick' })).status, 'inactive');
    await ow.rules.enable({ name: 'on-tick' });
  });

  await check('wsk list: actions, packages, triggers and rules', async () => {
    const [actions, packages, triggers, rules] = await Promise.all([
      ow.actions.list(), ow.packages.list(), ow.triggers.list(), ow.rules.list(),
    ]);
    assert.deepEqual(actions.map((a) => `${a.namespace}/${a.name}`), [
      'guest/echo-tick', 'guest/log', 'guest/page', 'guest/sum', 'guest/sum-then-echo', 'guest/utils/echo',
    ]);
    assert.deepEqual(packages.map((p) => p.name), ['mine', 'utils']);
    assert.deepEqual(triggers.map((t) => t.name), ['ticks']);
    assert.deepEqual(rules.map((r) => r.name), ['on-tick']);
  });

  await check('activation polling: since, name, docs', async () => {
    const since = Date.now();
    await ow.actions.invoke({ name: 'utils/echo', blocking: true, params: { poll: 1 } });
    const polled = await ow.activations.list({ name: 'utils/echo', since, docs: true });
    assert.equal(polled.length, 1);
    assert.deepEqual(polled[0].response.result, { greeting: 'hello', poll: 1 });
    // Before it: the package's invoke and the sequence's component.
    const earlier = await ow.activations.list({ name: 'utils/echo', upto: since - 1 });
    assert.equal(earlier.length, 2);
    assert.ok(earlier.every((a) => a.activationId !== polled[0].activationId));
  });
}

async function after() {
  await check('packages, a binding and their actions are still there', async () => {
    const result = await ow.actions.invoke({ name: 'mine/echo', blocking: true, result: true, params: { again: true } });
    assert.deepEqual(result, { greeting: 'hi', again: true });
  });

  await check('the sequence still runs', async () => {
    const result = await ow.actions.invoke({ name: 'sum-then-echo', blocking: true, result: true, params: { param1: 1, param2: 2 } });
    assert.deepEqual(result, { result: 3, greeting: 'hello' });
  });

  await check('the web action still answers', async () => {
    const page = await webGet('default/page?statusCode=202&body=still');
    assert.deepEqual([page.status, page.text], [202, 'still']);
  });

  await check('the trigger still fires through its rule', async () => {
    assert.equal((await ow.rules.get({ name: 'on-tick' })).status, 'active');
    assert.deepEqual(await firedEcho({ n: 2 }), { from: 'trigger', n: 2 });
  });

  await check('the activations of before the restart are still listed', async () => {
    const sequences = await ow.activations.list({ name: 'sum-then-echo', limit: 10 });
    assert.equal(sequences.length, 2);
  });
}

if (phase === 'before') {
  await before();
} else if (phase === 'after') {
  await after();
} else {
  throw new Error(`OW_PHASE must be 'before' or 'after', not ${phase}`);
}

console.log(`${passed} passed, 0 failed`);
