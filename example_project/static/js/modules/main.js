// A JavaScript module: it imports greeting.js by a relative URL, which the
// page's import map ({% importmap %}) turns into greeting.js's ?v= URL.
import { greeting } from "./greeting.js";

document.querySelector(".module").textContent = greeting();
