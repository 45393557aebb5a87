// Starts GraphiQL with the explorer plugin. Loaded from the gateway's own origin, so the
// page's Content-Security-Policy needs no inline script.
(function () {
  "use strict";

  // GraphiQL's dialogs add <style> elements; they carry this page's nonce, so the policy
  // allows them without 'unsafe-inline'.
  window.__webpack_nonce__ = document.currentScript.nonce;

  var config = JSON.parse(document.getElementById("graphiql-config").textContent);

  // Editor state is kept per set of opening tabs: new example operations appear
  // instead of tabs saved by an older release.
  function namespacedStorage(prefix) {
    var keys = function () {
      var found = [];
      for (var i = 0; i < window.localStorage.length; i++) {
        var key = window.localStorage.key(i);
        if (key !== null && key.indexOf(prefix) === 0) found.push(key);
      }
      return found;
    };
    return {
      getItem: function (key) { return window.localStorage.getItem(prefix + key); },
      setItem: function (key, value) { window.localStorage.setItem(prefix + key, value); },
      removeItem: function (key) { window.localStorage.removeItem(prefix + key); },
      clear: function () { keys().forEach(function (key) { window.localStorage.removeItem(key); }); },
      get length() { return keys().length; },
    };
  }

  var fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
  var explorer = GraphiQLPluginExplorer.explorerPlugin();

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  root.render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      plugins: [explorer],
      defaultTabs: config.tabs,
      defaultQuery: config.tabs[0].query,
      defaultHeaders: config.headers,
      isHeadersEditorEnabled: true,
      // Headers may hold an API key: never written to the browser's storage.
      shouldPersistHeaders: false,
      defaultEditorToolsVisibility: config.showHeaders ? "headers" : true,
      inputValueDeprecation: true,
      storage: namespacedStorage(config.storagePrefix),
    })
  );
})();
